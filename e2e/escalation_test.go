package e2e

import (
	"os/exec"
	"slices"
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
	stepEvery = 4 * time.Second // the e2e bundle's step timeout (CRITICAL)
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

	// Each step's recipient got exactly one message: the referrer, the
	// registrar and the ward system at step 2, the fail-safe officer at
	// step 3. Every step was taken by its timer, on time.
	sys.WaitQuiet(t, 30*time.Second)
	assertEachStepToldOnce(t, sys, id)
	assertClimbedOnTime(t, sys, id, 3)

	assertOneTrace(t, sys, id)
	assertNoPatientData(t, sys)

	// Only a person closes it: the trust's fail-safe officer, with a reason.
	// heraldctl presents its certificate and acts as the signed-in person
	// (HERALD_CTL_TOKEN: a token of the system's provider).
	ctl := exec.Command(bins["heraldctl"], "close", "-addr", sys.Addrs.AckGRPC,
		"-reason", "dealt with by the ED team outside Herald", id)
	ctl.Env = append(sys.CtlEnv(), "HERALD_CTL_TOKEN="+sys.AccessToken(t, harness.FailsafeOfficer))
	out, err := ctl.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "closed") {
		t.Fatalf("heraldctl close: %v\n%s", err, out)
	}
	closed := waitState(t, sys, id, ackv1.State_STATE_CLOSED, 10*time.Second)
	if tl := types(closed); count(tl, "FailsafeQueued") != 1 || count(tl, "AlertClosed") != 1 {
		t.Errorf("timeline after closing: %v", tl)
	}
}

// assertEachStepToldOnce checks that each recipient of the critical
// ladder got exactly one message about the alert per step: the referrer
// (step 1), the registrar and the ward system's webhook (step 2), the
// fail-safe officer (step 3), and the fail-safe officer again, as the
// trust's fail-safe team, once the alert is in the fail-safe queue.
// Recipients listed in uncounted are left to the caller.
func assertEachStepToldOnce(t *testing.T, sys *harness.System, id string, uncounted ...string) {
	t.Helper()
	mails := mailsFor(sys, id)
	for _, to := range []string{referrer, registrar} {
		if slices.Contains(uncounted, to) {
			continue
		}
		if n := len(mailTo(mails, to)); n != 1 {
			t.Errorf("alert %s: %d mails to %s, want exactly 1", id, n, to)
		}
	}
	step3, queue := 0, 0
	for _, m := range mailTo(mails, failsafe) {
		if strings.Contains(string(m.Data), "Fail-safe queue") {
			queue++
		} else {
			step3++
		}
	}
	if step3 != 1 || queue != 1 {
		t.Errorf("alert %s: mails to the fail-safe officer: %d for step 3 and %d for the fail-safe queue, want exactly 1 each", id, step3, queue)
	}
	if n := len(hooksFor(sys, id)); n != 1 {
		t.Errorf("alert %s: %d webhooks to the ward system, want exactly 1", id, n)
	}
}

// hooksFor returns the webhooks about an alert.
func hooksFor(sys *harness.System, id string) []harness.Hook {
	var out []harness.Hook
	for _, h := range sys.Webhook.Hooks() {
		if strings.Contains(string(h.Body), id) || strings.Contains(string(h.Body), sys.Ref(id)) {
			out = append(out, h)
		}
	}
	return out
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
