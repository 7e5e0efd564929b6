package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-health/herald/e2e/harness"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// clickLink acknowledges as the mail's recipient does: a POST to the
// acknowledge link (the services run with the dev identity "link-recipient").
func clickLink(t *testing.T, link string) {
	t.Helper()
	resp, err := http.Post(link, "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatalf("acknowledge by link: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("acknowledge by link: got HTTP %d, want 200", resp.StatusCode)
	}
}

// waitMail waits for the first mail about the alert to addr.
func waitMail(t *testing.T, sys *harness.System, alertID, addr string, within time.Duration) harness.Mail {
	t.Helper()
	var got []harness.Mail
	harness.Eventually(t, within, func() bool {
		got = mailTo(mailsFor(sys, alertID), addr)
		return len(got) > 0
	}, func() string { return "no mail to " + addr })
	return got[0]
}

// waitStepDue waits until the acknowledgement service has the alert at
// step index step and returns that step's deadline.
func waitStepDue(t *testing.T, sys *harness.System, alertID string, step uint32) time.Time {
	t.Helper()
	var due time.Time
	harness.Eventually(t, 10*time.Second, func() bool {
		st := getAlert(t, sys, alertID).GetState()
		due = st.GetStepDueAt().AsTime()
		return st.GetStep() == step && st.GetStepDueAt() != nil
	}, func() string { return fmt.Sprintf("alert %s never had a deadline at step index %d", alertID, step) })
	return due
}

// Acknowledged at step 2: escalation stops and nobody else is contacted.
func TestAcknowledgedAtStepTwoStopsEscalation(t *testing.T) {
	sys := start(t)
	send(t, sys, oru("MSG-ACK-1", "ACC-ACK-1", "F", "CRITICAL"))
	id := alertIDOf(t, sys, 30*time.Second)
	m := waitMail(t, sys, id, registrar, 30*time.Second)
	due := waitStepDue(t, sys, id, 1)

	clickLink(t, ackLink(t, m))
	resp := waitState(t, sys, id, ackv1.State_STATE_ACKNOWLEDGED, 10*time.Second)
	if got := resp.GetState().GetAcknowledgedBy().GetPersonId(); got != "e2e-registrar" {
		t.Errorf("acknowledged by: got %q, want e2e-registrar", got)
	}
	if got := resp.GetState().GetStep(); got != 1 {
		t.Errorf("acknowledged at step index: got %d, want 1 (step 2)", got)
	}

	// Past the deadlines of step 2 and of the fail-safe step, nothing more
	// was sent or decided.
	waitUntil(due.Add(stepEvery))
	sys.WaitQuiet(t, 30*time.Second)
	if n := len(mailTo(mailsFor(sys, id), failsafe)); n != 0 {
		t.Errorf("fail-safe officer emailed %d times after the acknowledgement, want 0", n)
	}
	if n := len(mailTo(mailsFor(sys, id), registrar)); n != 1 {
		t.Errorf("registrar emailed %d times, want 1", n)
	}
	tl := types(getAlert(t, sys, id))
	if count(tl, "FailsafeQueued") != 0 || count(tl, "AlertEscalated") != 1 {
		t.Errorf("timeline after acknowledgement at step 2: %v", tl)
	}
}

// Declined: the alert re-routes to the next target at once, not after the
// step's timeout.
func TestDeclinedReRoutesToNextTarget(t *testing.T) {
	sys := start(t)
	// Signed in first: the decline must come before step 1's timer, and a
	// sign-in on a loaded machine takes seconds.
	referrerCall := sys.As(t, harness.Referrer)
	send(t, sys, oru("MSG-DEC-1", "ACC-DEC-1", "F", "CRITICAL"))
	id := alertIDOf(t, sys, 30*time.Second)
	waitMail(t, sys, id, referrer, 30*time.Second)
	waitStepDue(t, sys, id, 0) // the acknowledgement service has the routing too

	_, err := sys.Ack.Decline(context.Background(), &ackv1.DeclineRequest{
		AlertId: id, RequestId: "decline-1", Reason: eventsv1.DeclineReason_DECLINE_REASON_WRONG_TEAM,
	}, referrerCall)
	if err != nil {
		t.Fatal(err)
	}
	waitMail(t, sys, id, registrar, 30*time.Second)
	tl := waitTimeline(t, sys, id, 10*time.Second, func(tl []string) bool { return count(tl, "AlertEscalated") >= 1 })
	if count(tl, "AlertDeclined") != 1 {
		t.Errorf("timeline: %v", tl)
	}
	// At once: the decline took the alert to step 2 (reason DECLINED),
	// before step 1's timer was due.
	rungs := ladder(t, sys, id)
	if len(rungs) == 0 || rungs[0].reason != eventsv1.EscalationReason_ESCALATION_REASON_DECLINED || !rungs[0].at.Before(rungs[0].due) || rungs[0].to != 1 {
		t.Errorf("first rung after the decline: %v, want an escalation to step 2 for the decline, before step 1 was due", rungs)
	}
}

// The same HL7 message sent twice: one alert, one set of messages, and the
// resend is acknowledged AA like the original.
func TestSameHL7MessageTwiceIsOneAlert(t *testing.T) {
	sys := start(t)
	msg := oru("MSG-DUP-1", "ACC-DUP-1", "F", "CRITICAL")
	send(t, sys, msg)
	send(t, sys, msg)
	id := alertIDOf(t, sys, 30*time.Second)
	m := waitMail(t, sys, id, referrer, 30*time.Second)
	clickLink(t, ackLink(t, m))
	waitState(t, sys, id, ackv1.State_STATE_ACKNOWLEDGED, 10*time.Second)
	sys.WaitQuiet(t, 30*time.Second)

	resp, err := sys.Ack.ListAlerts(context.Background(), &ackv1.ListAlertsRequest{Tenant: "RZZ", PageSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetAlerts()); n != 1 {
		t.Errorf("alerts: got %d, want 1", n)
	}
	if n := len(mailTo(mailsFor(sys, id), referrer)); n != 1 {
		t.Errorf("referrer emailed %d times, want 1", n)
	}
	tl := waitTimeline(t, sys, id, 10*time.Second, func(tl []string) bool { return count(tl, "AlertRouted") >= 1 })
	if count(tl, "AlertRouted") != 1 {
		t.Errorf("routed %d times, want 1: %v", count(tl, "AlertRouted"), tl)
	}
}

// A preliminary report then a final one with a higher category: the alert
// is upgraded, and the referrer hears of the CRITICAL category.
func TestPreliminaryThenFinalUpgrades(t *testing.T) {
	sys := start(t)
	send(t, sys, oru("MSG-UP-1", "ACC-UP-1", "P", "URGENT"))
	id := alertIDOf(t, sys, 30*time.Second)
	first := waitMail(t, sys, id, referrer, 30*time.Second)
	if !strings.Contains(strings.ToUpper(string(first.Data)), "URGENT") {
		t.Fatalf("first mail is not about an URGENT finding:\n%s", first.Data)
	}

	send(t, sys, oru("MSG-UP-2", "ACC-UP-1", "F", "CRITICAL"))
	harness.Eventually(t, 30*time.Second, func() bool {
		return getAlert(t, sys, id).GetState().GetCategory() == eventsv1.Category_CATEGORY_CRITICAL
	}, func() string {
		return "category not upgraded: " + getAlert(t, sys, id).GetState().GetCategory().String()
	})
	harness.Eventually(t, 30*time.Second, func() bool {
		for _, m := range mailTo(mailsFor(sys, id), referrer) {
			if strings.Contains(strings.ToUpper(string(m.Data)), "CRITICAL") {
				return true
			}
		}
		return false
	}, func() string { return "the referrer was not told of the CRITICAL upgrade" })
	tl := waitTimeline(t, sys, id, 10*time.Second, func(tl []string) bool { return count(tl, "AlertRouted") >= 2 })
	if count(tl, "AlertRouted") != 2 {
		t.Errorf("routings: got %d, want 2 (the upgrade); %v", count(tl, "AlertRouted"), tl)
	}

	// The upgrade restarted the ladder under the CRITICAL policy: nobody
	// answers, so it climbs every step on time to the fail-safe queue, and
	// each of its recipients is told once (the referrer twice in all: the
	// URGENT message of the first routing, the CRITICAL one of the second).
	waitState(t, sys, id, ackv1.State_STATE_FAILSAFE, 60*time.Second)
	sys.WaitQuiet(t, 30*time.Second)
	assertClimbedOnTime(t, sys, id, 3)
	if n := len(mailTo(mailsFor(sys, id), referrer)); n != 2 {
		t.Errorf("mails to the referrer: got %d, want 2 (one per routing)", n)
	}
	assertEachStepToldOnce(t, sys, id, referrer)
	if tl := types(getAlert(t, sys, id)); count(tl, "FailsafeQueued") != 1 {
		t.Errorf("fail-safe queued %d times: %v", count(tl, "FailsafeQueued"), tl)
	}
}

// A cancelled report withdraws the obligations; the record is kept.
func TestCancelledReportWithdrawsObligations(t *testing.T) {
	sys := start(t)
	send(t, sys, oru("MSG-CAN-1", "ACC-CAN-1", "F", "CRITICAL"))
	id := alertIDOf(t, sys, 30*time.Second)
	waitMail(t, sys, id, referrer, 30*time.Second)

	due := waitStepDue(t, sys, id, 0)
	send(t, sys, oru("MSG-CAN-2", "ACC-CAN-1", "X", "CRITICAL"))
	resp := waitState(t, sys, id, ackv1.State_STATE_CANCELLED, 20*time.Second)
	// Past the deadlines the withdrawn steps 1 and 2 had, nothing more was
	// sent.
	waitUntil(due.Add(stepEvery))
	sys.WaitQuiet(t, 30*time.Second)
	if n := len(mailTo(mailsFor(sys, id), registrar)) + len(mailTo(mailsFor(sys, id), failsafe)); n != 0 {
		t.Errorf("%d messages after the cancellation, want 0", n)
	}
	tl := types(resp)
	for _, want := range []string{"AlertRaised", "AlertRouted", "NotificationSent", "AlertCancelled"} {
		if count(tl, want) == 0 {
			t.Errorf("the record lost %s: %v", want, tl)
		}
	}
	if got := getAlert(t, sys, id).GetState().GetState(); got != ackv1.State_STATE_CANCELLED {
		t.Errorf("state: got %v, want CANCELLED", got)
	}
}
