package e2e

import (
	"context"
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

// Acknowledged at step 2: escalation stops and nobody else is contacted.
func TestAcknowledgedAtStepTwoStopsEscalation(t *testing.T) {
	sys := start(t)
	send(t, sys, oru("MSG-ACK-1", "ACC-ACK-1", "F", "CRITICAL"))
	id := alertIDOf(t, sys, 30*time.Second)
	m := waitMail(t, sys, id, registrar, 30*time.Second)

	clickLink(t, ackLink(t, m))
	resp := waitState(t, sys, id, ackv1.State_STATE_ACKNOWLEDGED, 10*time.Second)
	if got := resp.GetState().GetAcknowledgedBy().GetPersonId(); got != "e2e-registrar" {
		t.Errorf("acknowledged by: got %q, want e2e-registrar", got)
	}
	if got := resp.GetState().GetStep(); got != 1 {
		t.Errorf("acknowledged at step index: got %d, want 1 (step 2)", got)
	}

	time.Sleep(2*stepEvery + time.Second)
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
	send(t, sys, oru("MSG-DEC-1", "ACC-DEC-1", "F", "CRITICAL"))
	id := alertIDOf(t, sys, 30*time.Second)
	waitMail(t, sys, id, referrer, 30*time.Second)

	declined := time.Now()
	_, err := sys.Ack.Decline(context.Background(), &ackv1.DeclineRequest{
		AlertId: id, RequestId: "decline-1", Reason: eventsv1.DeclineReason_DECLINE_REASON_WRONG_TEAM,
		Actor: &eventsv1.Actor{PersonId: "e2e-referrer", IdentityProvider: "e2e"},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := waitMail(t, sys, id, registrar, 30*time.Second)
	if took := m.At.Sub(declined); took > stepEvery-time.Second {
		t.Errorf("registrar emailed %v after the decline, want well before the %v step timeout", took, stepEvery)
	}
	tl := waitTimeline(t, sys, id, 10*time.Second, func(tl []string) bool { return count(tl, "AlertEscalated") >= 1 })
	if count(tl, "AlertDeclined") != 1 {
		t.Errorf("timeline: %v", tl)
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
	time.Sleep(time.Second)

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
}

// A cancelled report withdraws the obligations; the record is kept.
func TestCancelledReportWithdrawsObligations(t *testing.T) {
	sys := start(t)
	send(t, sys, oru("MSG-CAN-1", "ACC-CAN-1", "F", "CRITICAL"))
	id := alertIDOf(t, sys, 30*time.Second)
	waitMail(t, sys, id, referrer, 30*time.Second)

	send(t, sys, oru("MSG-CAN-2", "ACC-CAN-1", "X", "CRITICAL"))
	resp := waitState(t, sys, id, ackv1.State_STATE_CANCELLED, 20*time.Second)
	time.Sleep(2*stepEvery + time.Second)
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
