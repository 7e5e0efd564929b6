package app_test

import (
	"testing"
	"time"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestLadderRunsToFailsafe runs a whole escalation ladder on the simulated
// clock, with real Redis timers: a day of alert time in well under a second.
func TestLadderRunsToFailsafe(t *testing.T) {
	h := newHarness(t)
	h.raiseAndRoute("alert-1", ladder())
	h.runUntil(h.t0.Add(25 * time.Hour))

	require.Equal(t, []fired{
		{"AlertEscalated", 15 * time.Minute, "ESCALATION_REASON_REPEAT"},
		{"AlertEscalated", 30 * time.Minute, "ESCALATION_REASON_TIMEOUT"},
		{"AlertEscalated", time.Hour, "ESCALATION_REASON_TIMEOUT"},
		{"SLABreached", time.Hour, "CLOCK_KIND_COMMUNICATE"},
		{"FailsafeQueued", 2 * time.Hour, ""},
		{"SLABreached", 2 * time.Hour, "CLOCK_KIND_ACKNOWLEDGE"},
		{"SLABreached", 24 * time.Hour, "CLOCK_KIND_ACTION"},
	}, h.decided("alert-1"))
	st := h.state("alert-1")
	require.Equal(t, lifecycle.Failsafe, st.State, "an exhausted policy ends in the fail-safe queue, never closed")
	require.Equal(t, "rzz-failsafe", st.FailsafeQueue)
	s, err := h.timers.Stats(h.ctx)
	require.NoError(t, err)
	require.Zero(t, s.Due+s.Leased, "no timer left")
}

func TestAcknowledgementStopsTheLadder(t *testing.T) {
	h := newHarness(t)
	h.raiseAndRoute("alert-2", ladder())
	h.runUntil(h.t0.Add(20 * time.Minute))
	out, err := h.app.Acknowledge(h.ctx, "alert-2", lifecycle.Acknowledge{Actor: &eventsv1.Actor{PersonId: "dr-a"}, RequestID: "req-1", Via: "app"})
	require.NoError(t, err)
	require.Equal(t, lifecycle.Acknowledged, out.State.State)
	// A repeat of the request returns the original outcome.
	again, err := h.app.Acknowledge(h.ctx, "alert-2", lifecycle.Acknowledge{Actor: &eventsv1.Actor{PersonId: "dr-a"}, RequestID: "req-1", Via: "app"})
	require.NoError(t, err)
	require.Equal(t, out.EventID, again.EventID)

	h.runUntil(h.t0.Add(25 * time.Hour))
	require.Equal(t, []fired{
		{"AlertEscalated", 15 * time.Minute, "ESCALATION_REASON_REPEAT"},
		{"AlertAcknowledged", 20 * time.Minute, ""},
		{"SLABreached", 24 * time.Hour, "CLOCK_KIND_ACTION"},
	}, h.decided("alert-2"))
	require.Equal(t, lifecycle.Acknowledged, h.state("alert-2").State)
}

func TestDeclineEscalatesAtOnce(t *testing.T) {
	h := newHarness(t)
	h.raiseAndRoute("alert-3", ladder())
	_, err := h.app.Decline(h.ctx, "alert-3", lifecycle.Decline{Actor: &eventsv1.Actor{PersonId: "dr-a"}, RequestID: "d1", Reason: eventsv1.DeclineReason_DECLINE_REASON_NOT_MY_PATIENT})
	require.NoError(t, err)
	h.settle()
	st := h.state("alert-3")
	require.Equal(t, lifecycle.Escalated, st.State)
	require.Equal(t, uint32(1), st.Step)
	// The step-1 timeout now runs from the decline.
	require.Equal(t, h.t0.Add(30*time.Minute), st.StepDueAt.AsTime())
}

// TestWipeMidLadder flushes the service's Redis database mid-ladder: the
// projection comes back from the state topic, the timers are re-armed, and
// the overdue step fires at once, once.
func TestWipeMidLadder(t *testing.T) {
	h := newHarness(t)
	h.raiseAndRoute("alert-4", ladder())
	h.raiseAndRoute("alert-5", ladder())
	h.runUntil(h.t0.Add(20 * time.Minute))
	require.NoError(t, h.rdb.FlushDB(h.ctx).Err())
	// While Redis is empty, time passes beyond two deadlines.
	h.clk.Set(h.t0.Add(40 * time.Minute))
	// The timer poller notices the lost epoch on its own schedule: wait until
	// the projection is restored and the open alerts' timers are armed again
	// before moving time on (else runUntil sees no timer and jumps to the end).
	require.Eventually(t, func() bool {
		ready, err := h.store.Ready(h.ctx)
		if err != nil || !ready {
			return false
		}
		st, err := h.timers.Stats(h.ctx)
		return err == nil && st.Due+st.Leased >= 2 // one timer per open alert
	}, 20*time.Second, 10*time.Millisecond, "projection restored and both alerts' timers re-armed after the wipe")
	h.runUntil(h.t0.Add(3 * time.Hour))
	for _, id := range []string{"alert-4", "alert-5"} {
		got := h.decided(id)
		var types []string
		for _, f := range got {
			types = append(types, f.Type+" "+f.Extra)
		}
		require.Equal(t, []string{
			"AlertEscalated ESCALATION_REASON_REPEAT",
			"AlertEscalated ESCALATION_REASON_TIMEOUT", // overdue at the wipe: fired at once, once
			"SLABreached CLOCK_KIND_COMMUNICATE",
			"AlertEscalated ESCALATION_REASON_TIMEOUT", // 30 min after the late escalation
			"SLABreached CLOCK_KIND_ACKNOWLEDGE",
			"FailsafeQueued ",
		}, types, id)
		require.Equal(t, 40*time.Minute, got[1].After, "the overdue escalation fired as soon as Redis came back")
		require.Equal(t, 70*time.Minute, got[3].After)
		require.Equal(t, 130*time.Minute, got[5].After)
		require.Equal(t, lifecycle.Failsafe, h.state(id).State)
	}
}

// TestStepFailedEscalatesAtOnce: nobody at the current step can be reached,
// so the alert moves to the next step without waiting for the timeout.
func TestStepFailedEscalatesAtOnce(t *testing.T) {
	h := newHarness(t)
	h.raiseAndRoute("alert-6", ladder())
	require.NoError(t, h.log.Append(h.ctx, &eventsv1.Event{EventId: "nf-1", AlertId: "alert-6", Tenant: "RZZ", OccurredAt: timestamppb.New(h.clk.Now()),
		Payload: &eventsv1.Event_NotificationFailed{NotificationFailed: &eventsv1.NotificationFailed{Step: 0, Repeat: 0, StepFailed: true, RecipientExhausted: true}}}))
	h.settle()
	require.Equal(t, []fired{{"AlertEscalated", 0, "ESCALATION_REASON_DELIVERY_FAILED"}}, h.decided("alert-6"))
	require.Equal(t, uint32(1), h.state("alert-6").Step)
}

// TestRerouteRestartsTheLadder: an amendment re-routes the alert (new
// round); the old round's timers no longer count and the new ladder runs.
func TestRerouteRestartsTheLadder(t *testing.T) {
	h := newHarness(t)
	h.raiseAndRoute("alert-7", ladder())
	h.runUntil(h.t0.Add(40 * time.Minute)) // repeat at 15, step 1 at 30
	now := h.clk.Now()
	require.NoError(t, h.log.Append(h.ctx, &eventsv1.Event{EventId: "alert-7-routed-2", AlertId: "alert-7", Tenant: "RZZ", OccurredAt: timestamppb.New(now),
		Payload: &eventsv1.Event_AlertRouted{AlertRouted: &eventsv1.AlertRouted{Category: eventsv1.Category_CATEGORY_CRITICAL, Policy: ladder(),
			Clocks: &eventsv1.Clocks{AcknowledgeBy: timestamppb.New(now.Add(time.Hour))}}}}))
	h.settle()
	st := h.state("alert-7")
	require.Equal(t, uint32(2), st.Round)
	require.Equal(t, uint32(0), st.Step)
	h.runUntil(h.t0.Add(40*time.Minute + 16*time.Minute))
	got := h.decided("alert-7")
	require.Equal(t, fired{"AlertEscalated", 55 * time.Minute, "ESCALATION_REASON_REPEAT"}, got[len(got)-1], "the new round repeats step 0 15 min after the re-route")
}
