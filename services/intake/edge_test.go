package intake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/telemetry"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	intakev1 "github.com/herald-health/herald/proto/gen/herald/intake/v1"
	"github.com/herald-health/herald/services/intake"
	"github.com/herald-health/herald/services/intake/internal/hl7"
	"github.com/herald-health/herald/services/intake/internal/mllp"
)

// A sender that ends its frame with 0x1C and no 0x0D, then waits, is
// answered: intake does not wait for a byte that never comes. The CR it
// sends late, with its next frame, is skipped.
func TestMLLPFrameEndingWithoutCarriageReturnIsAnswered(t *testing.T) {
	h := start(t, nil)
	conn, err := net.Dial("tcp", h.addrs["mllp"])
	require.NoError(t, err)
	defer conn.Close()
	r := mllp.NewReader(conn, 1<<20)

	// Given a frame that ends with the end block alone,
	_, err = conn.Write(append(append([]byte{0x0b}, variant(t, "M-NOCR-1", "ACC20261129001", "ACC-NOCR-1")...), 0x1c))
	require.NoError(t, err)
	// when the sender waits, then its ACK comes (a read that times out
	// means intake was still waiting for the CR).
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(15*time.Second)))
	ack, err := r.ReadFrame()
	require.NoError(t, err, "no ACK for a frame ending 0x1C without 0x0D")
	a := parseAck(t, ack)
	require.Equal(t, "AA", a.code, a.text)
	require.Equal(t, "M-NOCR-1", a.controlID)

	// Given the late CR arrives in front of the next frame, then that frame
	// is answered too.
	_, err = conn.Write(append(append([]byte{0x0d, 0x0b}, variant(t, "M-NOCR-2", "ACC20261129001", "ACC-NOCR-2")...), 0x1c, 0x0d))
	require.NoError(t, err)
	ack, err = r.ReadFrame()
	require.NoError(t, err)
	require.Equal(t, "M-NOCR-2", parseAck(t, ack).controlID)
	require.Len(t, h.events(t), 2)
}

// errCodes returns ERR-3.1 (the HL7 table 0357 code) and ERR-3.2 of each ERR
// segment of an ACK.
func errCodes(t *testing.T, ack []byte) []string {
	t.Helper()
	m, err := hl7.Parse(ack)
	require.NoError(t, err, "ACK parses: %q", ack)
	var out []string
	for _, e := range m.All("ERR") {
		out = append(out, e.Get(2, 1, 1, 1)+"-"+e.Get(2, 1, 3, 1)+" "+e.Get(3, 1, 1, 1)+" "+e.Get(3, 1, 2, 1))
	}
	return out
}

// mllpSend sends one message with python3-hl7's mllp_send (an independent
// client) and returns the ACK it printed.
func mllpSend(t *testing.T, addr string, msg []byte) []byte {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "message.mllp")
	require.NoError(t, os.WriteFile(file, append(append([]byte{0x0b}, msg...), 0x1c, 0x0d), 0o600))
	out, err := exec.Command("mllp_send", "--port", port, "--file", file, "127.0.0.1").CombinedOutput()
	require.NoError(t, err, "%s", out)
	// It prints the ACK with its framing and a newline.
	return bytes.Trim(out, "\x0b\x1c\r\n")
}

// An NHS number whose check digit fails is present but wrong: its ERR says
// "Data type error" (102), not "Required field missing" (101), while a
// missing accession is 101.
func TestHL7CheckDigitFailureIsReportedAsADataTypeError(t *testing.T) {
	h := start(t, nil)
	ack := mllpSend(t, h.addrs["mllp"], variant(t, "M-CHECKDIGIT",
		"9990000018^^^NHS^NH", "9990000019^^^NHS^NH",
		"|ACC20261129001^CRIS|XCHES", "|^CRIS|XCHES"))
	require.Contains(t, string(ack), "MSA|AA|M-CHECKDIGIT")
	require.ElementsMatch(t, []string{
		"PID-3 102 Data type error",
		"OBR-3 101 Required field missing",
	}, errCodes(t, ack))
}

// Messages that do not parse have no control id to echo, yet each ACK has
// its own MSH-10.
func TestUnparseableMessagesGetUniqueAckControlIDs(t *testing.T) {
	h := start(t, nil)
	c := h.dial(t)
	seen := map[string]bool{}
	for _, msg := range []string{"hello", "hello", "MSH|", "PID|1||9990000018^^^NHS^NH"} {
		ack, err := c.Send([]byte(msg))
		require.NoError(t, err)
		m, err := hl7.Parse(ack)
		require.NoError(t, err, "ACK parses: %q", ack)
		id := m.MSH().Field(10)
		require.Equal(t, "AE", parseAck(t, ack).code)
		require.NotEmpty(t, id)
		require.LessOrEqual(t, len(id), 20, "MSH-10 fits v2.3-2.5's 20 characters")
		require.False(t, seen[id], "ACK control id %s used twice", id)
		seen[id] = true
	}
	require.Empty(t, h.events(t))
}

// postFHIR posts body as FHIR JSON and returns the response and its
// OperationOutcome's issues as text.
func postFHIR(t *testing.T, method, url string, body []byte) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var oo map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&oo))
	require.Equal(t, "OperationOutcome", oo["resourceType"])
	issues, err := json.Marshal(oo["issue"])
	require.NoError(t, err)
	return resp, string(issues)
}

// A DiagnosticReport whose status is registered has nothing available yet:
// it raises no alert, whatever its text says, and the sender is told why.
func TestFHIRRegisteredReportRaisesNoAlert(t *testing.T) {
	h := start(t, nil)
	dr := strings.Replace(string(example(t, "diagnosticreport_critical.json")), `"status": "final"`, `"status": "registered"`, 1)
	require.Contains(t, dr, `"registered"`)
	resp, issues := postFHIR(t, http.MethodPost, "http://"+h.addrs["fhir"]+"/fhir/RZZ/DiagnosticReport", []byte(dr))
	require.Equal(t, http.StatusOK, resp.StatusCode, issues)
	require.Equal(t, "no_result", resp.Header.Get("X-Herald-Outcome"))
	require.Contains(t, issues, "registered")
	require.Empty(t, h.events(t))
}

// Another method on a FHIR endpoint is 405 with Allow: POST, not 404.
func TestFHIRWrongMethodIs405(t *testing.T) {
	h := start(t, nil)
	base := "http://" + h.addrs["fhir"] + "/fhir/RZZ"
	for _, tc := range []struct{ method, url string }{
		{http.MethodGet, base + "/DiagnosticReport"},
		{http.MethodPut, base + "/DiagnosticReport"},
		{http.MethodGet, base},
		{http.MethodDelete, base},
	} {
		resp, issues := postFHIR(t, tc.method, tc.url, nil)
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, "%s %s: %s", tc.method, tc.url, issues)
		require.Equal(t, http.MethodPost, resp.Header.Get("Allow"))
		require.Contains(t, issues, "POST")
	}
	// A path that is not an endpoint stays 404.
	resp, _ := postFHIR(t, http.MethodGet, "http://"+h.addrs["fhir"]+"/metadata", nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// logLines returns the JSON log records with the message msg.
func logLines(t *testing.T, logs, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(logs, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "log line %q", line)
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// Every rejected message, on every channel, is logged for the operators
// with its channel, sender, message id and the fields at fault, and without
// any patient data (start's cleanup checks the whole log for the synthetic
// patient of these messages).
func TestRejectedMessagesAreLoggedWithoutPatientData(t *testing.T) {
	h := start(t, nil)
	c := h.dial(t)
	// HL7: a facility that is no tenant, and a message that does not parse.
	require.Equal(t, "AE", send(t, c, variant(t, "M-REJ-FAC", "|CRIS|RZZ|", "|CRIS|NOWHERE|")).code)
	require.Equal(t, "AE", send(t, c, []byte("PID|1||9990000018^^^NHS^NH||TESTPATIENT^ALEX")).code)
	// FHIR: a resource that is not a report.
	resp, _ := postFHIR(t, http.MethodPost, "http://"+h.addrs["fhir"]+"/fhir/RZZ", []byte(`{"resourceType":"Patient","name":[{"family":"TESTPATIENT"}]}`))
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
	// gRPC: a report without a message id.
	conn, err := grpcserver.Dial(context.Background(), h.addrs["grpc"], telemetry.Nop("test"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = intakev1.NewIntakeServiceClient(conn).RaiseAlert(context.Background(), &intakev1.RaiseAlertRequest{Report: &intakev1.Report{
		Tenant: "RZZ", Accession: "ACC-REJ", Patient: &eventsv1.Patient{NhsNumber: "9990000018", FamilyName: "TESTPATIENT"},
		SourceFlag: &eventsv1.SourceFlag{Category: eventsv1.Category_CATEGORY_CRITICAL},
	}})
	require.Error(t, err)

	type seen struct{ channel, sender, messageID, fields string }
	var got []seen
	for _, rec := range logLines(t, h.logs.String(), "message rejected") {
		require.Equal(t, "WARN", rec["level"])
		fields, _ := json.Marshal(rec["fields"])
		got = append(got, seen{channel: rec["channel"].(string), sender: rec["sender"].(string), messageID: rec["message_id"].(string), fields: string(fields)})
	}
	require.ElementsMatch(t, []seen{
		{channel: "hl7", sender: "NOWHERE", messageID: "M-REJ-FAC", fields: `["MSH-4"]`},
		{channel: "hl7", sender: "", messageID: "", fields: `["MSH"]`},
		{channel: "fhir", sender: "RZZ", messageID: "", fields: `["resourceType"]`},
		{channel: "grpc", sender: "RZZ/", messageID: "", fields: `["report.source_message_id"]`},
	}, got)
	require.Empty(t, h.events(t))
}

// referrerOfEvent returns what intake recorded for an alert and the
// referrer it recorded.
func referrerOfEvent(t *testing.T, h *harness, alertID string) (outcome string, referrer *eventsv1.Clinician) {
	t.Helper()
	for _, e := range h.events(t) {
		if e.AlertId != alertID {
			continue
		}
		switch {
		case e.GetAlertRaised() != nil:
			return "raised", e.GetAlertRaised().GetDetails().GetReferrer()
		case e.GetAlertQuarantined() != nil:
			return "quarantined", e.GetAlertQuarantined().GetDetails().GetReferrer()
		}
	}
	t.Fatalf("no event of alert %s", alertID)
	return "", nil
}

// A standalone DiagnosticReport names its referrer through the
// ServiceRequest it is basedOn: contained in the report, in the Bundle
// (matched by reference, not the first one), or read from the trust's FHIR
// server. Where none can be found, the report is quarantined and the
// OperationOutcome says what is missing and how to send it.
func TestFHIRReferrerFromTheServiceRequestTheReportIsBasedOn(t *testing.T) {
	// The trust's FHIR server, a real HTTP peer, holds the order of the
	// reference example (ServiceRequest/sr-ord778899).
	var fetched []string
	var mu sync.Mutex
	fhirServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fetched = append(fetched, r.Method+" "+r.URL.Path+" "+r.Header.Get("Accept"))
		mu.Unlock()
		if r.URL.Path != "/fhir/R4/ServiceRequest/sr-ord778899" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = w.Write([]byte(`{"resourceType":"ServiceRequest","id":"sr-ord778899","status":"active","intent":"order",
			"subject":{"reference":"Patient/pt-synthetic-1"},
			"requester":{"identifier":{"system":"https://fhir.hl7.org.uk/Id/gmc-number","value":"C7654321"}}}`))
	}))
	defer fhirServer.Close()
	h := start(t, func(c *intake.Config) {
		c.Tenants = []intake.TenantSettings{
			{ODS: "RZZ", Facilities: []string{"RZZ"}, TriggerPhrases: []string{"CRITICAL ALERT"}},
			{ODS: "RXF", Facilities: []string{"RXFRIS"}, TriggerPhrases: []string{"CRITICAL ALERT"}, FHIRServer: fhirServer.URL + "/fhir/R4"},
			{ODS: "RXA", TriggerPhrases: []string{"CRITICAL ALERT"}, FHIRServer: fhirServer.URL + "/missing"},
		}
	})
	reference := string(example(t, "diagnosticreport_critical.json"))
	withAccession := func(body, acc string) []byte {
		require.Contains(t, body, "ACC20261129001")
		return []byte(strings.ReplaceAll(body, "ACC20261129001", acc))
	}
	post := func(tenant, path string, body []byte) (*http.Response, string) {
		return postFHIR(t, http.MethodPost, "http://"+h.addrs["fhir"]+"/fhir/"+tenant+path, body)
	}

	t.Run("contained", func(t *testing.T) {
		resp, issues := post("RZZ", "/DiagnosticReport", withAccession(string(example(t, "diagnosticreport_contained_order.json")), "ACC-CONTAINED"))
		require.Equal(t, http.StatusCreated, resp.StatusCode, issues)
		require.Equal(t, "raised", resp.Header.Get("X-Herald-Outcome"), issues)
		outcome, ref := referrerOfEvent(t, h, resp.Header.Get("X-Herald-Alert-Id"))
		require.Equal(t, "raised", outcome)
		require.Equal(t, "C1234567", ref.GetId())
		require.Equal(t, "https://fhir.hl7.org.uk/Id/gmc-number", ref.GetIdSystem())
	})

	t.Run("in the Bundle, by reference", func(t *testing.T) {
		// Two orders: the report is basedOn the second.
		bundle := fmt.Sprintf(`{"resourceType":"Bundle","type":"transaction","identifier":{"system":"urn:test","value":"B-REF"},"entry":[
		 {"fullUrl":"urn:uuid:other-order","resource":{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"Patient/pt-synthetic-1"},"requester":{"identifier":{"value":"C0000001"}}}},
		 {"fullUrl":"urn:uuid:this-order","resource":{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"Patient/pt-synthetic-1"},"requester":{"identifier":{"value":"C1234567"}}}},
		 {"resource":%s}]}`, strings.Replace(reference, `"reference": "ServiceRequest/sr-ord778899"`, `"reference": "urn:uuid:this-order"`, 1))
		resp, issues := post("RZZ", "", withAccession(bundle, "ACC-BUNDLE"))
		require.Equal(t, http.StatusCreated, resp.StatusCode, issues)
		outcome, ref := referrerOfEvent(t, h, resp.Header.Get("X-Herald-Alert-Id"))
		require.Equal(t, "raised", outcome)
		require.Equal(t, "C1234567", ref.GetId())
	})

	t.Run("read from the trust's FHIR server", func(t *testing.T) {
		// The reference example itself, unchanged: basedOn ServiceRequest/sr-ord778899.
		resp, issues := post("RXF", "/DiagnosticReport", []byte(reference))
		require.Equal(t, http.StatusCreated, resp.StatusCode, issues)
		require.Equal(t, "raised", resp.Header.Get("X-Herald-Outcome"), issues)
		outcome, ref := referrerOfEvent(t, h, resp.Header.Get("X-Herald-Alert-Id"))
		require.Equal(t, "raised", outcome)
		require.Equal(t, "C7654321", ref.GetId())
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, []string{"GET /fhir/R4/ServiceRequest/sr-ord778899 application/fhir+json"}, fetched)
	})

	t.Run("not carried and no server: quarantined, saying what is missing", func(t *testing.T) {
		resp, issues := post("RZZ", "/DiagnosticReport", []byte(reference))
		require.Equal(t, http.StatusCreated, resp.StatusCode, issues)
		require.Equal(t, "quarantined", resp.Header.Get("X-Herald-Outcome"))
		require.Contains(t, issues, "ServiceRequest.requester")
		require.Contains(t, issues, "DiagnosticReport.basedOn[0] names a ServiceRequest that is not contained in the report")
		require.Contains(t, issues, "send the ServiceRequest whose requester is the referrer")
	})

	t.Run("the server does not have it: quarantined with the reason", func(t *testing.T) {
		resp, issues := post("RXA", "/DiagnosticReport", withAccession(reference, "ACC-404"))
		require.Equal(t, http.StatusCreated, resp.StatusCode, issues)
		require.Equal(t, "quarantined", resp.Header.Get("X-Herald-Outcome"))
		require.Contains(t, issues, "could not be read from the trust's FHIR server (HTTP 404)")
	})
}
