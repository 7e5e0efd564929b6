package ctl

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	intakev1 "github.com/herald-health/herald/proto/gen/herald/intake/v1"
)

func raiseCommand() command {
	return command{
		name:    "raise",
		summary: "raise an alert from flags, an HL7 v2 file (over MLLP) or a FHIR file",
		usage: `heraldctl raise: send a flagged report to intake, as a RIS would.

  heraldctl raise -tenant RZZ -accession ACC123 -category critical -nhs 9990000018 -referrer C1234567
  heraldctl raise -hl7 services/intake/testdata/oru_r01_critical_pneumothorax.hl7     (HL7 v2 over MLLP; prints the ACK)
  heraldctl raise -fhir services/intake/testdata/diagnosticreport_contained_order.json (FHIR R4, DiagnosticReport or Bundle)

It prints the alert id intake derived, and whether the report was a duplicate or quarantined.
`,
		run: runRaise,
	}
}

var categories = map[string]eventsv1.Category{
	"critical":    eventsv1.Category_CATEGORY_CRITICAL,
	"urgent":      eventsv1.Category_CATEGORY_URGENT,
	"significant": eventsv1.Category_CATEGORY_SIGNIFICANT_UNEXPECTED,
	"cancer":      eventsv1.Category_CATEGORY_CANCER,
}

func runRaise(ctx context.Context, e *env, args []string) error {
	c := raiseCommand()
	fs := newFlags(c, e)
	addr := fs.String("addr", e.addrs.intake, "intake gRPC address")
	mllpAddr := fs.String("mllp", e.addrs.mllp, "intake MLLP address (with -hl7)")
	fhirURL := fs.String("fhir-url", e.addrs.fhir, "intake FHIR base URL (with -fhir)")
	hl7File := fs.String("hl7", "", "HL7 v2 file to send over MLLP")
	fhirFile := fs.String("fhir", "", "FHIR R4 JSON file (DiagnosticReport or transaction Bundle) to POST")
	tenant := fs.String("tenant", "RZZ", "trust ODS code")
	accession := fs.String("accession", "", "accession number (OBR-3)")
	finding := fs.String("finding", "", "finding code within the report (default: the report)")
	category := fs.String("category", "critical", "the radiologist's flag: critical, urgent, significant or cancer")
	nhs := fs.String("nhs", "", "NHS number (10 digits; 999 range for tests)")
	referrer := fs.String("referrer", "", "referrer id (GMC number or local code)")
	exam := fs.String("exam", "", "exam code")
	modality := fs.String("modality", "CT", "modality")
	patientClass := fs.String("patient-class", "E", "patient class: E, I or O")
	msgID := fs.String("message-id", "", "source message id (default: generated; reuse it to send a duplicate)")
	if len(args) == 0 {
		// Raising a real alert needs at least one deliberate choice.
		return usageError("say what to raise: -hl7 FILE, -fhir FILE, or the report's flags (-accession, -nhs, -referrer, -category)")
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("raise takes flags only, not " + strings.Join(fs.Args(), " "))
	}
	switch {
	case *hl7File != "":
		return raiseHL7(ctx, e, *mllpAddr, *hl7File)
	case *fhirFile != "":
		return raiseFHIR(ctx, e, *fhirURL, *tenant, *fhirFile)
	}
	cat, ok := categories[strings.ToLower(*category)]
	if !ok {
		return fmt.Errorf("-category %q is not one of critical, urgent, significant, cancer", *category)
	}
	if *msgID == "" {
		*msgID = fmt.Sprintf("heraldctl-%d", time.Now().UnixNano())
	}
	conn, err := e.dial(*addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := timeout(ctx)
	defer cancel()
	resp, err := intakev1.NewIntakeServiceClient(conn).RaiseAlert(ctx, &intakev1.RaiseAlertRequest{Report: &intakev1.Report{
		Tenant:          *tenant,
		SourceSystem:    "heraldctl",
		SourceMessageId: *msgID,
		Accession:       *accession,
		FindingCode:     *finding,
		Patient:         &eventsv1.Patient{NhsNumber: *nhs},
		Exam:            &eventsv1.Exam{Code: *exam, Modality: *modality},
		SourceFlag:      &eventsv1.SourceFlag{Category: cat},
		ReportStatus:    eventsv1.ReportStatus_REPORT_STATUS_FINAL,
		Referrer:        &eventsv1.Clinician{Id: *referrer},
		Encounter:       &eventsv1.Encounter{PatientClass: *patientClass},
		ReportedAt:      timestamppb.Now(),
	}})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.out, "alert %s raised (duplicate=%v, quarantined=%v)\n", resp.GetAlertId(), resp.GetDuplicate(), resp.GetQuarantined())
	for _, p := range resp.GetProblems() {
		fmt.Fprintf(e.out, "  quarantine reason: %s: %s\n", p.GetField(), p.GetProblem())
	}
	return nil
}

// raiseHL7 sends the file as one MLLP frame and prints the ACK's MSA and
// ERR segments.
func raiseHL7(ctx context.Context, e *env, addr, file string) error {
	msg, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	msg = bytes.ReplaceAll(bytes.ReplaceAll(bytes.TrimSpace(msg), []byte("\r\n"), []byte("\r")), []byte("\n"), []byte("\r"))
	ack, err := e.sendMLLP(ctx, addr, msg)
	if err != nil {
		return err
	}
	for _, seg := range strings.Split(string(ack), "\r") {
		if strings.HasPrefix(seg, "MSA") || strings.HasPrefix(seg, "ERR") {
			fmt.Fprintln(e.out, seg)
		}
	}
	if !strings.Contains(string(ack), "MSA|AA") && !strings.Contains(string(ack), "MSA|CA") {
		return errors.New("intake did not accept the message (see the MSA and ERR segments above)")
	}
	return nil
}

// sendMLLP frames msg (0x0B msg 0x1C 0x0D), sends it and reads one framed reply.
func (e *env) sendMLLP(ctx context.Context, addr string, msg []byte) ([]byte, error) {
	id, err := e.identity()
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	dial := d.DialContext
	if id != nil {
		dial = id.Dialer(nil, "") // MLLP over mutual TLS
	}
	ctx, cancel := timeout(ctx)
	defer cancel()
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to MLLP %s: %w", addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	frame := append(append([]byte{0x0b}, msg...), 0x1c, 0x0d)
	if _, err := conn.Write(frame); err != nil {
		return nil, fmt.Errorf("send to %s: %w", addr, err)
	}
	r := bufio.NewReader(conn)
	if _, err := r.ReadBytes(0x0b); err != nil {
		return nil, fmt.Errorf("read ACK start from %s: %w", addr, err)
	}
	body, err := r.ReadBytes(0x1c)
	if err != nil {
		return nil, fmt.Errorf("read ACK from %s: %w", addr, err)
	}
	return body[:len(body)-1], nil
}

func raiseFHIR(ctx context.Context, e *env, base, tenant, file string) error {
	body, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	url := strings.TrimRight(base, "/") + "/fhir/" + tenant
	if bytes.Contains(body, []byte(`"resourceType": "DiagnosticReport"`)) || bytes.Contains(body, []byte(`"resourceType":"DiagnosticReport"`)) {
		url += "/DiagnosticReport"
	}
	ctx, cancel := timeout(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	client := http.DefaultClient
	id, err := e.identity()
	if err != nil {
		return err
	}
	if id != nil {
		client = &http.Client{Transport: &http.Transport{DialTLSContext: id.Dialer(nil, "")}}
		defer client.CloseIdleConnections()
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("post to %s: %w", url, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	fmt.Fprintf(e.out, "%s %s\n", resp.Status, resp.Header.Get("Location"))
	fmt.Fprintln(e.out, strings.TrimSpace(string(out)))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("intake refused the resource (HTTP %d; the OperationOutcome above says why)", resp.StatusCode)
	}
	return nil
}
