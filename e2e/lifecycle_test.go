package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-health/herald/e2e/harness"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// The clinical lifecycle through the real protocols (#18 items 1, 3, 4, 9,
// 10, 11): every path ends with someone told, and the reference people see
// is the same everywhere.

// fhirReport is the shipped DiagnosticReport with a contained order (its
// requester is the e2e referrer), with the accession, status and issued
// time a scenario varies. A standalone report's message id is a hash of its
// body, so a re-issue differs from the original by its issued time, as a
// RIS's does.
func fhirReport(t *testing.T, accession, status string, issued time.Time) []byte {
	t.Helper()
	b, err := os.ReadFile("../services/intake/testdata/diagnosticreport_contained_order.json")
	if err != nil {
		t.Fatal(err)
	}
	var dr map[string]any
	if err := json.Unmarshal(b, &dr); err != nil {
		t.Fatal(err)
	}
	dr["status"] = status
	dr["issued"] = issued.UTC().Format(time.RFC3339Nano)
	dr["identifier"] = []any{map[string]any{"system": "https://example-trust.nhs.uk/Id/ris-accession", "value": accession}}
	out, err := json.Marshal(dr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// postFHIR posts a DiagnosticReport over mutual TLS as the harness and
// requires the HTTP status want.
func postFHIR(t *testing.T, sys *harness.System, body []byte, want int) {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialTLSContext: sys.TLS.Client.Dialer(nil, "")}}
	defer c.CloseIdleConnections()
	resp, err := c.Post("https://"+sys.Addrs.FHIR+"/fhir/RZZ/DiagnosticReport", "application/fhir+json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("FHIR POST: got HTTP %d, want %d: %s", resp.StatusCode, want, b)
	}
}

// waitMails waits until addr has at least n mails about the alert.
func waitMails(t *testing.T, sys *harness.System, alertID, addr string, n int, within time.Duration) []harness.Mail {
	t.Helper()
	var got []harness.Mail
	harness.Eventually(t, within, func() bool {
		got = mailTo(mailsFor(sys, alertID), addr)
		return len(got) >= n
	}, func() string { return fmt.Sprintf("%d mails to %s, want %d", len(got), addr, n) })
	return got
}

// effectiveRoutings counts the AlertRouted entries that changed the state.
func effectiveRoutings(r *ackv1.GetAlertResponse) int {
	n := 0
	tl := r.GetTimeline()
	if len(tl) == 0 {
		tl = r.GetState().GetTimeline()
	}
	for _, e := range tl {
		if e.GetType() == "AlertRouted" && !e.GetNoEffect() {
			n++
		}
	}
	return n
}

// A final report re-issued after OBR-25 X is a new obligation: the alert
// re-opens, the referrer is told again and its own ladder climbs.
func TestHL7ReportAfterCancelStartsANewObligation(t *testing.T) {
	sys := start(t)
	send(t, sys, oru("MSG-REO-1", "ACC-REO-1", "F", "CRITICAL"))
	id := alertIDOf(t, sys, 30*time.Second)
	waitMail(t, sys, id, referrer, 30*time.Second)
	send(t, sys, oru("MSG-REO-2", "ACC-REO-1", "X", "CRITICAL"))
	waitState(t, sys, id, ackv1.State_STATE_CANCELLED, 20*time.Second)

	send(t, sys, oru("MSG-REO-3", "ACC-REO-1", "F", "CRITICAL"))
	waitMails(t, sys, id, referrer, 2, 30*time.Second)
	// Its own ladder: unanswered, step 2 follows on time.
	waitMail(t, sys, id, registrar, 30*time.Second)
	resp := getAlert(t, sys, id)
	st := resp.GetState()
	if st.GetState() == ackv1.State_STATE_CANCELLED || st.GetReopened() != 1 {
		t.Errorf("after the re-issue: state %v, reopened %d; want an open alert re-opened once; timeline %v", st.GetState(), st.GetReopened(), types(resp))
	}
	if n := effectiveRoutings(resp); n != 2 {
		t.Errorf("effective routings: got %d, want 2 (the first report and the re-issue); timeline %v", n, types(resp))
	}
}

// Through FHIR: a report re-issued after status cancelled, and again after
// a fail-safe officer's Close, each starts a new obligation.
func TestFHIRReportAfterCancelOrCloseStartsANewObligation(t *testing.T) {
	sys := start(t)
	issued := time.Now().Add(-time.Minute)
	postFHIR(t, sys, fhirReport(t, "ACC-FREO-1", "final", issued), http.StatusCreated)
	id := alertIDOf(t, sys, 30*time.Second)
	waitMail(t, sys, id, referrer, 30*time.Second)

	postFHIR(t, sys, fhirReport(t, "ACC-FREO-1", "cancelled", issued.Add(time.Second)), http.StatusCreated)
	waitState(t, sys, id, ackv1.State_STATE_CANCELLED, 20*time.Second)
	postFHIR(t, sys, fhirReport(t, "ACC-FREO-1", "final", issued.Add(2*time.Second)), http.StatusCreated)
	waitMails(t, sys, id, referrer, 2, 30*time.Second)

	waitStepDue(t, sys, id, 0)
	_, err := sys.Ack.Close(context.Background(), &ackv1.CloseRequest{AlertId: id, RequestId: "close-freo", Reason: "discussed at MDT"},
		sys.As(t, harness.FailsafeOfficer))
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, sys, id, ackv1.State_STATE_CLOSED, 20*time.Second)
	postFHIR(t, sys, fhirReport(t, "ACC-FREO-1", "final", issued.Add(3*time.Second)), http.StatusCreated)
	waitMails(t, sys, id, referrer, 3, 30*time.Second)
	resp := getAlert(t, sys, id)
	if st := resp.GetState(); st.GetState() == ackv1.State_STATE_CLOSED || st.GetReopened() != 2 {
		t.Errorf("after the re-issue past the close: state %v, reopened %d; want an open alert re-opened twice; timeline %v",
			st.GetState(), st.GetReopened(), types(resp))
	}
}

// An acknowledgement of an alert in the fail-safe queue is recorded, but
// only the fail-safe officer's Close takes it out of the queue.
func TestAcknowledgeInFailsafeQueueKeepsItQueuedUntilClose(t *testing.T) {
	sys := start(t)
	send(t, sys, oru("MSG-FSQ-1", "ACC-FSQ-1", "F", "CRITICAL"))
	id := alertIDOf(t, sys, 30*time.Second)
	waitState(t, sys, id, ackv1.State_STATE_FAILSAFE, 90*time.Second)
	m := waitMail(t, sys, id, failsafe, 30*time.Second)

	clickLink(t, ackLink(t, m))
	waitTimeline(t, sys, id, 20*time.Second, func(tl []string) bool { return count(tl, "AlertAcknowledged") == 1 })
	resp := getAlert(t, sys, id)
	if st := resp.GetState(); st.GetState() != ackv1.State_STATE_FAILSAFE || st.GetAcknowledgedBy().GetPersonId() != "e2e-fso" {
		t.Fatalf("after an acknowledgement in the queue: state %v acknowledged by %q; want FAILSAFE, acknowledged by e2e-fso",
			st.GetState(), st.GetAcknowledgedBy().GetPersonId())
	}
	queue, err := sys.Ack.ListAlerts(context.Background(), &ackv1.ListAlertsRequest{Tenant: "RZZ", States: []ackv1.State{ackv1.State_STATE_FAILSAFE}, PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(queue.GetAlerts()) != 1 || queue.GetAlerts()[0].GetAlertId() != id {
		t.Errorf("fail-safe queue: got %d alerts, want the acknowledged alert still in it", len(queue.GetAlerts()))
	}
	_, err = sys.Ack.Acknowledge(context.Background(), &ackv1.AcknowledgeRequest{AlertId: id, RequestId: "ack-fsq-2"},
		sys.As(t, harness.Registrar))
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("a second acknowledgement in the queue: got %v, want FailedPrecondition", err)
	}
	_, err = sys.Ack.Close(context.Background(), &ackv1.CloseRequest{AlertId: id, RequestId: "close-fsq", Reason: "referrer acted"},
		sys.As(t, harness.FailsafeOfficer))
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, sys, id, ackv1.State_STATE_CLOSED, 20*time.Second)
}

// All must acknowledge: the step counts every person it resolved to, not
// only those whose send was recorded. The ward system has no email address,
// so its send of an email-only step is never recorded; the referrer's
// acknowledgement alone must not complete the step.
func TestAllMustCountsEveryResolvedRecipient(t *testing.T) {
	b, err := os.ReadFile("testdata/bundle.yaml")
	if err != nil {
		t.Fatal(err)
	}
	firstStep := "      - targets: [{kind: referrer}]\n        timeout: 4s\n        channels: [email]\n"
	if !strings.Contains(string(b), firstStep) {
		t.Fatal("the e2e bundle's critical policy no longer starts with the referrer step this test edits")
	}
	yaml := strings.Replace(string(b), firstStep,
		"      - targets: [{kind: referrer}, {kind: person, ref: e2e-ward-system}]\n        timeout: 30s\n        ack: all_must\n        channels: [email]\n", 1)
	sys := harness.StartSystem(t, bins, []harness.Bundle{{Tenant: "RZZ", YAML: yaml}})

	send(t, sys, oru("MSG-ALL-1", "ACC-ALL-1", "F", "CRITICAL"))
	id := alertIDOf(t, sys, 30*time.Second)
	m := waitMail(t, sys, id, referrer, 30*time.Second)
	waitTimeline(t, sys, id, 20*time.Second, func(tl []string) bool { return count(tl, "StepRecipientsResolved") == 1 })
	clickLink(t, ackLink(t, m))
	waitTimeline(t, sys, id, 20*time.Second, func(tl []string) bool { return count(tl, "AlertAcknowledged") == 1 })
	resp := getAlert(t, sys, id)
	if st := resp.GetState(); st.GetState() == ackv1.State_STATE_ACKNOWLEDGED || st.GetStep() != 0 {
		t.Fatalf("one of two resolved recipients acknowledged: state %v at step index %d; want step 1 still awaiting the ward system; timeline %v",
			st.GetState(), st.GetStep(), types(resp))
	}
	if got := resp.GetState().GetStepResolved(); len(got) != 2 {
		t.Errorf("resolved recipients: got %v, want the referrer and the ward system", got)
	}
}

// An amendment that changes nothing clinically does not tell anyone again;
// one that upgrades restarts the ladder at step 0.
func TestAmendmentThatChangesNothingDoesNotReNotify(t *testing.T) {
	sys := start(t)
	send(t, sys, oru("MSG-AMD-1", "ACC-AMD-1", "F", "URGENT"))
	id := alertIDOf(t, sys, 30*time.Second)
	waitMail(t, sys, id, referrer, 30*time.Second)
	for i := 2; i <= 4; i++ {
		send(t, sys, oru(fmt.Sprintf("MSG-AMD-%d", i), "ACC-AMD-1", "C", "URGENT"))
	}
	waitTimeline(t, sys, id, 20*time.Second, func(tl []string) bool { return count(tl, "AlertAmended") == 3 })
	sys.WaitQuiet(t, 30*time.Second)
	if n := len(mailTo(mailsFor(sys, id), referrer)); n != 1 {
		t.Errorf("referrer emailed %d times after three amendments that changed nothing, want 1", n)
	}
	if tl := types(getAlert(t, sys, id)); count(tl, "AlertRouted") != 1 {
		t.Errorf("routed %d times, want 1: %v", count(tl, "AlertRouted"), tl)
	}

	send(t, sys, oru("MSG-AMD-5", "ACC-AMD-1", "C", "CRITICAL"))
	mails := waitMails(t, sys, id, referrer, 2, 30*time.Second)
	if !strings.Contains(strings.ToUpper(string(mails[1].Data)), "CRITICAL") {
		t.Errorf("the upgrade's message is not about a CRITICAL finding:\n%s", mails[1].Data)
	}
	// The message comes from notification; acknowledgement's view of the
	// alert follows the same routing on its own consumer, so it is waited
	// for, not read once (round 1 is also at step 0 with a deadline, so
	// waiting for "step 0 due" alone would pass on the old round).
	var round uint32
	var category eventsv1.Category
	harness.Eventually(t, 60*time.Second, func() bool {
		st := getAlert(t, sys, id).GetState()
		round, category = st.GetRound(), st.GetCategory()
		return round == 2 && category == eventsv1.Category_CATEGORY_CRITICAL && st.GetStep() == 0 && st.GetStepDueAt() != nil
	}, func() string {
		return fmt.Sprintf("after the upgrade: round %d category %v, want round 2 CRITICAL restarted at step 0", round, category)
	})
}

// A report sent eight days after it was verified gets its full time from
// receipt: no clock is past on arrival and its message shows an
// acknowledge-by time in the future; the source's time is kept for audit.
func TestBackDatedReportClocksStartAtReceipt(t *testing.T) {
	sys := start(t)
	reported := time.Now().Add(-8 * 24 * time.Hour).Truncate(time.Second)
	received := time.Now()
	send(t, sys, oruAt("MSG-BACK-1", "ACC-BACK-1", "F", "CRITICAL", reported))
	id := alertIDOf(t, sys, 30*time.Second)
	m := waitMail(t, sys, id, referrer, 30*time.Second)
	st := getAlert(t, sys, id).GetState()
	ackBy := st.GetClocks().GetAcknowledgeBy().AsTime()
	if !ackBy.After(received) {
		t.Errorf("acknowledge-by %v is before the report was received at %v: the clocks ran from the report's verification", ackBy, received)
	}
	if got := st.GetClocks().GetReportedAt().AsTime(); !got.Equal(reported) {
		t.Errorf("source report time kept for audit: got %v, want %v", got, reported)
	}
	if started := st.GetClocks().GetStartedAt().AsTime(); started.Before(received.Add(-time.Minute)) {
		t.Errorf("clocks started at %v, want at receipt (%v)", started, received)
	}
	body := strings.ReplaceAll(string(m.Data), "=\r\n", "")
	if want := ackBy.UTC().Format("2006-01-02 15:04 UTC"); !strings.Contains(body, want) {
		t.Errorf("the message does not show acknowledge by %s:\n%s", want, body)
	}
	if tl := types(getAlert(t, sys, id)); count(tl, "SLABreached") != 0 {
		t.Errorf("a clock breached on arrival: %v", tl)
	}
}

// One reference for an alert wherever a person sees it: the email's subject
// and body, the acknowledge page, the API (and so heraldctl); it is keyed,
// so it shows nothing of the alert id, and the API finds the alert by it.
func TestOneReferenceEverywhere(t *testing.T) {
	sys := start(t)
	send(t, sys, oru("MSG-REF-1", "ACC-REF-1", "F", "CRITICAL"))
	id := alertIDOf(t, sys, 30*time.Second)
	ref := sys.Ref(id)
	m := waitMail(t, sys, id, referrer, 30*time.Second)
	data := strings.ReplaceAll(string(m.Data), "=\r\n", "")
	subject := ""
	for _, line := range strings.Split(data, "\r\n") {
		if strings.HasPrefix(line, "Subject:") {
			subject = line
		}
	}
	if !strings.Contains(subject, ref) {
		t.Errorf("email subject %q does not carry the reference %s", subject, ref)
	}
	upper := strings.ToUpper(id)
	for _, old := range []string{upper[:4] + "-" + upper[4:8], "HRD-" + upper[:10], id} {
		if strings.Contains(strings.ToUpper(data), strings.ToUpper(old)) {
			t.Errorf("the email shows the alert id in an old reference format %q", old)
		}
	}

	resp, err := http.Get(ackLink(t, m))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), ref) {
		t.Errorf("the acknowledge page does not show the reference %s", ref)
	}
	if strings.Contains(strings.ToUpper(string(page)), "HRD-"+upper[:10]) {
		t.Errorf("the acknowledge page shows the old reference HRD-%s", upper[:10])
	}

	if got := getAlert(t, sys, id).GetState().GetAccessionRef(); got != ref {
		t.Errorf("API reference: got %q, want %q", got, ref)
	}
	byRef, err := sys.Ack.GetAlert(context.Background(), &ackv1.GetAlertRequest{AlertId: strings.ToLower(ref)})
	if err != nil {
		t.Fatalf("GetAlert by reference %s: %v", ref, err)
	}
	if byRef.GetState().GetAlertId() != id {
		t.Errorf("GetAlert by reference found %s, want %s", byRef.GetState().GetAlertId(), id)
	}

	// The operator CLI shows it and acts on an alert named by it.
	// heraldctl presents its certificate.
	show := exec.Command(bins["heraldctl"], "show", "-addr", sys.Addrs.AckGRPC, ref)
	show.Env = sys.CtlEnv()
	out, err := show.CombinedOutput()
	if err != nil || !strings.Contains(string(out), id) || !strings.Contains(string(out), "reference "+ref) {
		t.Errorf("heraldctl show %s: %v\n%s", ref, err, out)
	}
	// heraldctl acts as the person whose token it holds (heraldctl login
	// keeps one; HERALD_CTL_TOKEN gives one). On a loaded machine the
	// alert may have climbed to the fail-safe queue by now, where the
	// acknowledgement is recorded and the alert stays queued: what matters
	// is that the referrer's acknowledgement of the alert named by its
	// reference is recorded.
	ack := exec.Command(bins["heraldctl"], "ack", "-addr", sys.Addrs.AckGRPC, ref)
	ack.Env = append(sys.CtlEnv(), "HERALD_CTL_TOKEN="+sys.AccessToken(t, harness.Referrer))
	out, err = ack.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "is now ") {
		t.Fatalf("heraldctl ack %s: %v\n%s", ref, err, out)
	}
	waitTimeline(t, sys, id, 30*time.Second, func(tl []string) bool { return count(tl, "AlertAcknowledged") == 1 })
	if by := getAlert(t, sys, id).GetState().GetAcknowledgedBy().GetPersonId(); by != harness.Referrer.ID {
		t.Errorf("heraldctl ack %s recorded an acknowledgement by %q, want %s", ref, by, harness.Referrer.ID)
	}
}
