package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herald-health/herald/e2e/harness"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// oru is the reference ORU^R01 (shared/reference/examples) with the parts
// a scenario varies: message id, accession, report status (OBR-25) and the
// coded alert category (OBX-3 ALERTCAT). All patient data is synthetic.
func oru(msgID, accession, status, category string) string {
	return oruAt(msgID, accession, status, category, time.Now()) // the report was verified just now
}

// oruAt is oru with the report's verification time (OBR-22) given.
func oruAt(msgID, accession, status, category string, reported time.Time) string {
	now := time.Now().UTC().Format("20060102150405")
	verified := reported.UTC().Format("20060102150405")
	return strings.Join([]string{
		"MSH|^~\\&|CRIS|RZZ|CRITALERT|REGIONNET|" + now + "||ORU^R01^ORU_R01|" + msgID + "|P|2.4|||AL|NE|GBR|UNICODE UTF-8",
		"PID|1||9990000018^^^NHS^NH~RZZ1234567^^^RZZ^MR||TESTPATIENT^ALEX^^^MX||19700101|U|||1 Synthetic Street^^Testtown^^ZZ99 9ZZ^GBR",
		"PV1|1|E|ED^MAJ^07^RZZ01|||||C1234567^REFERRER^SAM^^^DR||EM",
		"ORC|RE|ORD778899^ICE|" + accession + "^CRIS||CM||||20261129143400|||C1234567^REFERRER^SAM^^^DR",
		"OBR|1|ORD778899^ICE|" + accession + "^CRIS|XCHES^XR Chest^NICIP~399208008^Plain chest X-ray^SCT|||20261129141000||||||SOB, pleuritic chest pain, ?PE|||C1234567^REFERRER^SAM^^^DR|01234 567890|||||" + verified + "||RAD|" + status + "||^^^^^S|||||R9876543&RADIOLOGIST&JO&&&DR",
		"OBX|1|TX|RPT^Report text^L|1|FINDINGS: Large right pneumothorax with complete collapse of the right lung.||||||" + status,
		"OBX|2|CE|ALERTCAT^Radiology alert category^L|1|" + category + "^Alert^L|||AA|||" + status,
	}, "\r")
}

// Synthetic patient data of oru, which must never leave the event payload.
var patientData = []string{"9990000018", "TESTPATIENT", "ALEX", "19700101", "1970-01-01", "Synthetic Street", "pneumothorax", "ZZ99 9ZZ", "RZZ1234567"}

// send sends an HL7 message and requires an AA.
func send(t *testing.T, sys *harness.System, msg string) string {
	t.Helper()
	ack, err := harness.SendMLLP(sys.Addrs.MLLP, msg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ack, "MSA|AA") {
		t.Fatalf("ACK: got %q, want MSA|AA", ack)
	}
	return ack
}

// alertIDOf waits until the acknowledgement service knows an alert with the
// given tenant and returns the newest one's id.
func alertIDOf(t *testing.T, sys *harness.System, within time.Duration) string {
	t.Helper()
	var id string
	harness.Eventually(t, within, func() bool {
		resp, err := sys.Ack.ListAlerts(context.Background(), &ackv1.ListAlertsRequest{Tenant: "RZZ", PageSize: 100})
		if err != nil || len(resp.GetAlerts()) == 0 {
			return false
		}
		id = resp.GetAlerts()[0].GetAlertId()
		return true
	}, func() string { return "no alert listed for RZZ" })
	return id
}

// mailsFor returns the mails about an alert, in arrival order.
func mailsFor(sys *harness.System, alertID string) []harness.Mail {
	var out []harness.Mail
	for _, m := range sys.SMTP.Mails() {
		if strings.Contains(string(m.Data), sys.Ref(alertID)) {
			out = append(out, m)
		}
	}
	return out
}

func mailTo(mails []harness.Mail, addr string) []harness.Mail {
	var out []harness.Mail
	for _, m := range mails {
		for _, to := range m.To {
			if to == addr {
				out = append(out, m)
			}
		}
	}
	return out
}

var linkRE = regexp.MustCompile(`http://[^\s]+/ack/[A-Za-z0-9_\-\.=]+`)

// ackLink returns the acknowledge link in a mail.
func ackLink(t *testing.T, m harness.Mail) string {
	t.Helper()
	l := linkRE.FindString(strings.ReplaceAll(string(m.Data), "=\r\n", ""))
	if l == "" {
		t.Fatalf("no acknowledge link in mail:\n%s", m.Data)
	}
	return l
}

func getAlert(t *testing.T, sys *harness.System, alertID string) *ackv1.GetAlertResponse {
	t.Helper()
	resp, err := sys.Ack.GetAlert(context.Background(), &ackv1.GetAlertRequest{AlertId: alertID})
	if err != nil {
		t.Fatalf("GetAlert %s: %v", alertID, err)
	}
	return resp
}

func waitState(t *testing.T, sys *harness.System, alertID string, want ackv1.State, within time.Duration) *ackv1.GetAlertResponse {
	t.Helper()
	var last *ackv1.GetAlertResponse
	harness.Eventually(t, within, func() bool {
		resp, err := sys.Ack.GetAlert(context.Background(), &ackv1.GetAlertRequest{AlertId: alertID})
		if err != nil {
			return false
		}
		last = resp
		return resp.GetState().GetState() == want
	}, func() string {
		return fmt.Sprintf("alert %s: state %v, want %v; timeline %v", alertID, last.GetState().GetState(), want, types(last))
	})
	return last
}

// waitTimeline waits until the alert's timeline (acknowledgement's
// projection, which follows the log a moment behind the notifications)
// satisfies ok, and returns it.
func waitTimeline(t *testing.T, sys *harness.System, alertID string, within time.Duration, ok func(tl []string) bool) []string {
	t.Helper()
	var tl []string
	harness.Eventually(t, within, func() bool {
		tl = types(getAlert(t, sys, alertID))
		return ok(tl)
	}, func() string { return fmt.Sprintf("alert %s: timeline %v", alertID, tl) })
	return tl
}

func types(r *ackv1.GetAlertResponse) []string {
	var out []string
	tl := r.GetTimeline()
	if len(tl) == 0 {
		tl = r.GetState().GetTimeline()
	}
	for _, e := range tl {
		out = append(out, e.GetType())
	}
	return out
}

func count(ss []string, s string) int {
	n := 0
	for _, x := range ss {
		if x == s {
			n++
		}
	}
	return n
}

// assertNoPatientData checks every service's logs and every collected span
// for the scenario's synthetic patient data.
func assertNoPatientData(t *testing.T, sys *harness.System) {
	t.Helper()
	for name, logs := range sys.Logs() {
		for _, secret := range patientData {
			if i := strings.Index(string(logs), secret); i >= 0 {
				lo, hi := max(0, i-200), min(len(logs), i+100)
				t.Errorf("%s logs contain patient data %q: ...%s...", name, secret, logs[lo:hi])
			}
		}
	}
	for _, s := range sys.Traces.Spans() {
		for k, v := range s.Attributes {
			for _, secret := range patientData {
				if strings.Contains(v, secret) || strings.Contains(k, secret) {
					t.Errorf("span %s (%s) attribute %s contains patient data %q", s.Name, s.Service, k, secret)
				}
			}
		}
		for _, e := range s.Events {
			for k, v := range e.Attributes {
				for _, secret := range patientData {
					if strings.Contains(v, secret) || strings.Contains(e.Name, secret) {
						t.Errorf("span %s event %s attribute %s contains patient data %q", s.Name, e.Name, k, secret)
					}
				}
			}
		}
	}
}

// rung is one step of an alert's escalation ladder as the log records it:
// an AlertEscalated or FailsafeQueued that took effect, when it happened
// (occurred_at) and when the step it left was due (the time that step
// started, by the routing or the escalation before, plus its timeout in
// the routed policy).
type rung struct {
	kind     string
	reason   eventsv1.EscalationReason
	from, to uint32
	at, due  time.Time
	timeout  time.Duration // of the step it left
}

func (r rung) String() string {
	return fmt.Sprintf("%s %d->%d %s at due%+v", r.kind, r.from, r.to, r.reason, r.at.Sub(r.due))
}

// ladder reads the alert's events from the log and returns the rungs of
// its latest routing round. Effect comes from the acknowledgement
// service's timeline (an escalation that lost a race has no effect).
func ladder(t *testing.T, sys *harness.System, alertID string) []rung {
	t.Helper()
	noEffect := map[string]bool{}
	for _, en := range getAlert(t, sys, alertID).GetTimeline() {
		noEffect[en.GetEventId()] = en.GetNoEffect()
	}
	var (
		out   []rung
		steps []*eventsv1.EscalationStep
		start time.Time
		step  uint32
	)
	seen := map[string]bool{}
	for _, ev := range sys.Events(t, alertID) {
		if seen[ev.GetEventId()] || noEffect[ev.GetEventId()] {
			continue // a record written twice, or an event that changed nothing
		}
		seen[ev.GetEventId()] = true
		at := ev.GetOccurredAt().AsTime()
		timeout := func() time.Duration {
			if int(step) < len(steps) {
				return steps[step].GetTimeout().AsDuration()
			}
			return 0
		}
		switch p := ev.GetPayload().(type) {
		case *eventsv1.Event_AlertRouted:
			steps, start, step, out = p.AlertRouted.GetPolicy().GetSteps(), at, 0, nil
		case *eventsv1.Event_AlertEscalated:
			x := p.AlertEscalated
			out = append(out, rung{kind: "AlertEscalated", reason: x.GetReason(), from: x.GetFromStep(), to: x.GetToStep(), at: at, due: start.Add(timeout()), timeout: timeout()})
			start, step = at, x.GetToStep()
		case *eventsv1.Event_FailsafeQueued:
			out = append(out, rung{kind: "FailsafeQueued", from: step, to: step, at: at, due: start.Add(timeout()), timeout: timeout()})
		}
	}
	return out
}

// assertClimbedOnTime checks that the alert's latest round climbed want
// steps (escalations, then the fail-safe queue) and that each was taken
// on time by its step timer: reason TIMEOUT, not before the step's
// deadline, and before a step's worth of time had passed after it (a timer
// lost and only recovered later, by a restart or a sweep, fails this;
// timer lateness itself is measured by `make bench`, not asserted here).
func assertClimbedOnTime(t *testing.T, sys *harness.System, alertID string, want int) {
	t.Helper()
	rungs := ladder(t, sys, alertID)
	if len(rungs) != want {
		t.Fatalf("alert %s climbed %v, want %d rungs", alertID, rungs, want)
	}
	for i, r := range rungs {
		if r.kind == "AlertEscalated" && r.reason != eventsv1.EscalationReason_ESCALATION_REASON_TIMEOUT {
			t.Errorf("alert %s rung %d: %v, want a step timeout", alertID, i, r)
		}
		if want := "FailsafeQueued"; i == len(rungs)-1 && r.kind != want {
			t.Errorf("alert %s: last rung %v, want %s", alertID, r, want)
		}
		if late := r.at.Sub(r.due); late < 0 || late >= r.timeout {
			t.Errorf("alert %s rung %d: %v, want at its step's deadline (not before it, not a step later)", alertID, i, r)
		}
	}
}

// waitUntil waits until the wall clock passes at: the point after which a
// timer that should not exist would have fired.
func waitUntil(at time.Time) {
	if d := time.Until(at); d > 0 {
		time.Sleep(d)
	}
}
