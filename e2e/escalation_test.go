package e2e

import (
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/herald-health/herald/e2e/harness"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
)

const (
	referrer  = "referrer@e2e.example.nhs.uk"
	registrar = "registrar@e2e.example.nhs.uk"
	failsafe  = "failsafe@e2e.example.nhs.uk"
	stepEvery = 4 * time.Second // the e2e bundle's step timeout
)

// A critical alert that nobody acknowledges climbs every step on time and
// lands in the trust's fail-safe queue, never closed; one trace holds it
// all, and no log line or span carries the patient's details.
func TestCriticalUnacknowledgedEscalatesToFailsafe(t *testing.T) {
	sys := start(t)
	send(t, sys, oru("MSG-FS-1", "ACC-FS-1", "F", "CRITICAL"))
	id := alertIDOf(t, sys, 30*time.Second)

	resp := waitState(t, sys, id, ackv1.State_STATE_FAILSAFE, 60*time.Second)
	tl := types(resp)
	if got := count(tl, "AlertEscalated"); got != 2 {
		t.Errorf("escalations: got %d, want 2 (three steps); timeline %v", got, tl)
	}
	if got := count(tl, "FailsafeQueued"); got != 1 {
		t.Errorf("fail-safe queued: got %d, want 1; timeline %v", got, tl)
	}
	if count(tl, "AlertClosed") != 0 {
		t.Errorf("the alert was closed: %v", tl)
	}

	// Each step's recipient got exactly one email, one step timeout apart.
	var ref0, ref1, ref2 []harness.Mail
	harness.Eventually(t, 20*time.Second, func() bool {
		mails := mailsFor(sys, id)
		ref0, ref1, ref2 = mailTo(mails, referrer), mailTo(mails, registrar), mailTo(mails, failsafe)
		return len(ref0) >= 1 && len(ref1) >= 1 && len(ref2) >= 1
	}, func() string { return "not every step's recipient was emailed" })
	if len(ref0) != 1 || len(ref1) != 1 {
		t.Errorf("emails: referrer %d, registrar %d; want exactly one each", len(ref0), len(ref1))
	}
	for i, gap := range []time.Duration{ref1[0].At.Sub(ref0[0].At), ref2[0].At.Sub(ref1[0].At)} {
		if gap < stepEvery-time.Second || gap > stepEvery+3*time.Second {
			t.Errorf("step %d -> %d took %v, want about %v", i, i+1, gap, stepEvery)
		}
	}
	hooks := sys.Webhook.Hooks()
	if len(hooks) != 1 {
		t.Errorf("webhooks to the ward system at step 2: got %d, want 1", len(hooks))
	}

	assertOneTrace(t, sys, id)
	assertNoPatientData(t, sys)

	// Only a person closes it: the trust's fail-safe officer, with a reason.
	out, err := exec.Command(bins["heraldctl"], "close", "-addr", sys.Addrs.AckGRPC, "-as", "e2e-fso",
		"-reason", "dealt with by the ED team outside Herald", id).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "closed") {
		t.Fatalf("heraldctl close: %v\n%s", err, out)
	}
	closed := waitState(t, sys, id, ackv1.State_STATE_CLOSED, 10*time.Second)
	if tl := types(closed); count(tl, "FailsafeQueued") != 1 || count(tl, "AlertClosed") != 1 {
		t.Errorf("timeline after closing: %v", tl)
	}
}

// assertOneTrace checks that every span naming the alert is in one trace,
// and that the trace holds spans of all four services.
func assertOneTrace(t *testing.T, sys *harness.System, alertID string) {
	t.Helper()
	var traces map[string]bool
	var services map[string]bool
	harness.Eventually(t, 15*time.Second, func() bool {
		traces, services = map[string]bool{}, map[string]bool{}
		for _, s := range sys.Traces.Spans() {
			if s.Attributes["herald.alert_id"] == alertID {
				traces[s.TraceID] = true
			}
		}
		for _, s := range sys.Traces.Spans() {
			if traces[s.TraceID] {
				services[s.Service] = true
			}
		}
		return len(services) == 4
	}, func() string {
		var names []string
		for s := range services {
			names = append(names, s)
		}
		sort.Strings(names)
		return "services in the alert's trace: " + join(names)
	})
	if len(traces) != 1 {
		t.Errorf("alert %s spans are in %d traces, want 1", alertID, len(traces))
	}
}

func join(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += ", "
		}
		out += s
	}
	return out
}
