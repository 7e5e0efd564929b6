package lifecycle_test

import (
	"testing"
	"time"

	"github.com/herald-health/herald/platform/eventtype"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"github.com/stretchr/testify/require"
)

func stepTimer(st *lifecycle.State) lifecycle.Timer {
	for _, t := range lifecycle.Timers(st) {
		if t.Kind == lifecycle.TimerStep {
			return t
		}
	}
	panic("no step timer")
}

func TestTimersWanted(t *testing.T) {
	tests := []struct {
		name  string
		given []*eventsv1.Event
		want  []string
	}{
		{name: "raised: none", given: evs(raised())},
		{name: "routed: step and three clocks", given: evs(raised(), routed()),
			want: []string{lifecycle.StepTimerID(alertID), lifecycle.ClockTimerID(alertID, clockComm), lifecycle.ClockTimerID(alertID, clockAck), lifecycle.ClockTimerID(alertID, clockAction)}},
		{name: "delivered: communicate met", given: evs(raised(), routed(), sent("s", 0, 0, "a"), ev("d", time.Minute, &eventsv1.NotificationDelivered{})),
			want: []string{lifecycle.StepTimerID(alertID), lifecycle.ClockTimerID(alertID, clockAck), lifecycle.ClockTimerID(alertID, clockAction)}},
		{name: "acknowledged: action clock only", given: evs(raised(), routed(), ack("k", "a", 0)),
			want: []string{lifecycle.ClockTimerID(alertID, clockAction)}},
		{name: "actioned: none", given: evs(raised(), routed(), ack("k", "a", 0), ev("x", time.Hour, &eventsv1.ActionRecorded{Action: "done"}))},
		{name: "fail-safe: clocks, no step", given: evs(raised(), routed(), ev("f", time.Hour, &eventsv1.FailsafeQueued{}), breach("b", clockComm, time.Hour)),
			want: []string{lifecycle.ClockTimerID(alertID, clockAck), lifecycle.ClockTimerID(alertID, clockAction)}},
		{name: "cancelled: none", given: evs(raised(), routed(), ev("c", time.Minute, &eventsv1.AlertCancelled{}))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, tm := range lifecycle.Timers(fold(tt.given...)) {
				got = append(got, tm.ID)
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func TestPlanTimers(t *testing.T) {
	routedSt := fold(raised(), routed())
	sentSt := fold(raised(), routed(), sent("s", 0, 0, "a"))
	p := lifecycle.PlanTimers(routedSt, sentSt)
	require.Empty(t, p.Arm, "a send changes no deadline")
	require.Empty(t, p.Cancel)

	escSt := fold(raised(), routed(), sent("s", 0, 0, "a"), escalated("e", 16*time.Minute, 0, 0, 1, reasonRepeat))
	p = lifecycle.PlanTimers(sentSt, escSt)
	require.Len(t, p.Arm, 1)
	require.Equal(t, uint32(1), p.Arm[0].Repeat)

	ackSt := fold(raised(), routed(), ack("k", "a", 0))
	p = lifecycle.PlanTimers(routedSt, ackSt)
	require.Empty(t, p.Arm)
	require.ElementsMatch(t, []string{lifecycle.StepTimerID(alertID), lifecycle.ClockTimerID(alertID, clockComm), lifecycle.ClockTimerID(alertID, clockAck)}, p.Cancel)

	p = lifecycle.PlanTimers(nil, routedSt)
	require.Len(t, p.Arm, 4)
}

func TestDecideTimer(t *testing.T) {
	routedSt := fold(raised(), routed())
	rep1 := fold(raised(), routed(), escalated("e1", 16*time.Minute, 0, 0, 1, reasonRepeat))
	step2 := fold(raised(), routed(), escalated("e2", time.Hour, 0, 2, 0, reasonTimeout))
	late := t0.Add(48 * time.Hour)
	clock := func(st *lifecycle.State, k eventsv1.ClockKind) lifecycle.Timer {
		for _, tm := range lifecycle.Timers(st) {
			if tm.Kind == lifecycle.TimerClock && tm.Clock == k {
				return tm
			}
		}
		t.Fatalf("no %s timer", k)
		return lifecycle.Timer{}
	}
	tests := []struct {
		name    string
		state   *lifecycle.State
		timer   lifecycle.Timer
		now     time.Time
		verdict lifecycle.Verdict
		want    string // payload type
		check   func(t *testing.T, ev *eventsv1.Event)
	}{
		{name: "step 0 repeats first", state: routedSt, timer: stepTimer(routedSt), now: late, verdict: lifecycle.Fire, want: "AlertEscalated",
			check: func(t *testing.T, ev *eventsv1.Event) {
				x := ev.GetAlertEscalated()
				require.Equal(t, uint32(0), x.ToStep)
				require.Equal(t, uint32(1), x.Repeat)
				require.Equal(t, reasonRepeat, x.Reason)
				require.Equal(t, lifecycle.EventID(alertID, "escalated", "1", "0", "1"), ev.EventId)
			}},
		{name: "repeats exhausted: next step", state: rep1, timer: stepTimer(rep1), now: late, verdict: lifecycle.Fire, want: "AlertEscalated",
			check: func(t *testing.T, ev *eventsv1.Event) {
				x := ev.GetAlertEscalated()
				require.Equal(t, uint32(1), x.ToStep)
				require.Equal(t, uint32(0), x.Repeat)
				require.Equal(t, reasonTimeout, x.Reason)
			}},
		{name: "last step: fail-safe", state: step2, timer: stepTimer(step2), now: late, verdict: lifecycle.Fire, want: "FailsafeQueued",
			check: func(t *testing.T, ev *eventsv1.Event) {
				require.Equal(t, "rzz-failsafe", ev.GetFailsafeQueued().Queue)
				require.Equal(t, uint32(2), ev.GetFailsafeQueued().LastStep)
			}},
		{name: "early: behind", state: routedSt, timer: stepTimer(routedSt), now: t0, verdict: lifecycle.Behind},
		{name: "unknown alert: behind", state: nil, timer: stepTimer(routedSt), now: late, verdict: lifecycle.Behind},
		{name: "projection behind the timer", state: routedSt, timer: stepTimer(rep1), now: late, verdict: lifecycle.Behind},
		{name: "projection behind by a round", state: fold(raised()), timer: stepTimer(routedSt), now: late, verdict: lifecycle.Behind},
		{name: "timer of an old step: stale", state: rep1, timer: stepTimer(routedSt), now: late, verdict: lifecycle.Stale},
		{name: "acknowledged: stale", state: fold(raised(), routed(), ack("k", "a", 0)), timer: stepTimer(routedSt), now: late, verdict: lifecycle.Stale},
		{name: "cancelled: stale", state: fold(raised(), routed(), ev("c", time.Minute, &eventsv1.AlertCancelled{})), timer: stepTimer(routedSt), now: late, verdict: lifecycle.Stale},
		{name: "closed: stale", state: fold(raised(), routed(), ev("cl", time.Minute, &eventsv1.AlertClosed{})), timer: stepTimer(routedSt), now: late, verdict: lifecycle.Stale},
		{name: "fail-safe: stale", state: fold(raised(), routed(), ev("f", time.Minute, &eventsv1.FailsafeQueued{})), timer: stepTimer(routedSt), now: late, verdict: lifecycle.Stale},
		{name: "acknowledge clock breached", state: routedSt, timer: clock(routedSt, clockAck), now: late, verdict: lifecycle.Fire, want: "SLABreached",
			check: func(t *testing.T, ev *eventsv1.Event) {
				require.Equal(t, clockAck, ev.GetSlaBreached().Clock)
				require.Equal(t, t0.Add(2*time.Hour), ev.GetSlaBreached().Deadline.AsTime())
			}},
		{name: "acknowledge clock met", state: fold(raised(), routed(), ack("k", "a", 0)), timer: clock(routedSt, clockAck), now: late, verdict: lifecycle.Stale},
		{name: "action clock after acknowledgement", state: fold(raised(), routed(), ack("k", "a", 0)), timer: clock(routedSt, clockAction), now: late, verdict: lifecycle.Fire, want: "SLABreached"},
		{name: "clock moved by a re-route: stale", state: fold(raised(), routed(), reroute("r2", time.Minute)), timer: func() lifecycle.Timer {
			tm := clock(routedSt, clockAck)
			tm.Due = tm.Due.Add(-time.Minute)
			return tm
		}(), now: late, verdict: lifecycle.Stale},
		{name: "already breached: stale", state: fold(raised(), routed(), breach("b", clockAck, 2*time.Hour)), timer: clock(routedSt, clockAck), now: late, verdict: lifecycle.Stale},
		{name: "clock in fail-safe still breaches", state: fold(raised(), routed(), ev("f", time.Minute, &eventsv1.FailsafeQueued{})), timer: clock(routedSt, clockAck), now: late, verdict: lifecycle.Fire, want: "SLABreached"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, events := lifecycle.DecideTimer(tt.state, tt.timer, tt.now)
			require.Equal(t, tt.verdict.String(), v.String())
			if tt.verdict != lifecycle.Fire {
				require.Empty(t, events)
				return
			}
			require.Len(t, events, 1)
			require.Equal(t, tt.want, eventtype.Of(events[0]))
			// Deciding again gives the same event id.
			_, again := lifecycle.DecideTimer(tt.state, tt.timer, tt.now.Add(time.Minute))
			require.Equal(t, events[0].EventId, again[0].EventId)
			if tt.check != nil {
				tt.check(t, events[0])
			}
			// The decided event has an effect on the state it was decided on.
			after, applied := lifecycle.Apply(tt.state, events[0], lifecycle.Position{Offset: 100})
			require.True(t, applied)
			require.False(t, after.Timeline[len(after.Timeline)-1].NoEffect)
		})
	}
}

func TestReact(t *testing.T) {
	declined := func(stepN uint32) *eventsv1.Event {
		return ev("x", time.Minute, &eventsv1.AlertDeclined{Actor: person("a"), Step: stepN, Reason: eventsv1.DeclineReason_DECLINE_REASON_WRONG_TEAM})
	}
	failed := func(stepN, repeat uint32, stepFailed bool) *eventsv1.Event {
		return ev("nf", time.Minute, &eventsv1.NotificationFailed{Step: stepN, Repeat: repeat, StepFailed: stepFailed})
	}
	noSteps := ev("routed", time.Second, &eventsv1.AlertRouted{Category: eventsv1.Category_CATEGORY_URGENT, Policy: policy()})
	tests := []struct {
		name  string
		given []*eventsv1.Event
		when  *eventsv1.Event
		want  string
		check func(t *testing.T, ev *eventsv1.Event)
	}{
		{name: "decline escalates to next step", given: evs(raised(), routed()), when: declined(0), want: "AlertEscalated",
			check: func(t *testing.T, e *eventsv1.Event) {
				require.Equal(t, reasonDeclined, e.GetAlertEscalated().Reason)
				require.Equal(t, uint32(1), e.GetAlertEscalated().ToStep)
				require.Equal(t, "x", e.CausationId)
			}},
		{name: "decline at last step goes to fail-safe", given: evs(raised(), routed(), escalated("e", time.Minute, 0, 2, 0, reasonTimeout)), when: declined(2), want: "FailsafeQueued"},
		{name: "step failed escalates", given: evs(raised(), routed()), when: failed(0, 0, true), want: "AlertEscalated",
			check: func(t *testing.T, e *eventsv1.Event) {
				require.Equal(t, eventsv1.EscalationReason_ESCALATION_REASON_DELIVERY_FAILED, e.GetAlertEscalated().Reason)
			}},
		{name: "recipient failure alone does not", given: evs(raised(), routed()), when: failed(0, 0, false)},
		{name: "failure of an old repeat does not", given: evs(raised(), routed(), escalated("e", time.Minute, 0, 0, 1, reasonRepeat)), when: failed(0, 0, true)},
		{name: "failure after acknowledgement does not", given: evs(raised(), routed(), ack("k", "a", 0)), when: failed(0, 0, true)},
		{name: "policy without steps goes to fail-safe", given: evs(raised()), when: noSteps, want: "FailsafeQueued"},
		{name: "acknowledgement: nothing", given: evs(raised(), routed()), when: ack("k", "a", 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, applied := lifecycle.Apply(fold(tt.given...), tt.when, lifecycle.Position{Offset: int64(len(tt.given))})
			require.True(t, applied)
			out := lifecycle.React(st, tt.when, now)
			if tt.want == "" {
				require.Empty(t, out)
				return
			}
			require.Len(t, out, 1)
			require.Equal(t, tt.want, eventtype.Of(out[0]))
			if tt.check != nil {
				tt.check(t, out[0])
			}
			after, applied := lifecycle.Apply(st, out[0], lifecycle.Position{Offset: 100})
			require.True(t, applied)
			require.False(t, after.Timeline[len(after.Timeline)-1].NoEffect)
		})
	}
}

// TestLadderWithSimulatedTime walks a whole ladder: every step timer fires
// at its deadline until the alert lands in the fail-safe queue, and the
// timer set then holds only the open clocks.
func TestLadderWithSimulatedTime(t *testing.T) {
	st := fold(raised(), routed())
	var kinds []string
	offset := int64(2)
	for i := 0; i < 10; i++ {
		tm := lifecycle.Timers(st)
		if len(tm) == 0 || tm[0].Kind != lifecycle.TimerStep {
			break
		}
		v, out := lifecycle.DecideTimer(st, tm[0], tm[0].Due)
		require.Equal(t, lifecycle.Fire, v)
		out[0].OccurredAt = nil
		out[0].OccurredAt = at(tm[0].Due.Sub(t0))
		var applied bool
		st, applied = lifecycle.Apply(st, out[0], lifecycle.Position{Offset: offset})
		require.True(t, applied)
		offset++
		kinds = append(kinds, eventtype.Of(out[0]))
	}
	require.Equal(t, []string{"AlertEscalated", "AlertEscalated", "AlertEscalated", "FailsafeQueued"}, kinds)
	require.Equal(t, lifecycle.Failsafe, st.State)
	// 15 + 15 + 30 + 60 minutes after routing.
	require.Equal(t, t0.Add(time.Second+2*time.Hour), st.UpdatedAt.AsTime())
}

// TestEveryWantedTimerFires is the invariant the service relies on: a timer
// the state asks for, once due, is decided Fire on that same state (never
// Stale), so re-arming from the current state cannot loop on a stale timer.
func TestEveryWantedTimerFires(t *testing.T) {
	states := [][]*eventsv1.Event{
		evs(raised(), routed()),
		evs(raised(), routed(), sent("s", 0, 0, "a")),
		evs(raised(), routed(), escalated("e1", 16*time.Minute, 0, 0, 1, reasonRepeat)),
		evs(raised(), routed(), escalated("e2", time.Hour, 0, 2, 0, reasonTimeout)),
		evs(raised(), routed(), ack("k", "a", 0)),
		evs(raised(), routed(), ev("f", time.Hour, &eventsv1.FailsafeQueued{})),
		evs(raised(), routed(), breach("b", clockComm, time.Hour)),
		evs(raised(), allMustRouted(), sent("s1", 0, 0, "a"), sent("s2", 0, 0, "b"), ack("k", "a", 0)),
		evs(raised(), routed(), reroute("r2", time.Minute)),
	}
	for i, given := range states {
		st := fold(given...)
		for _, tm := range lifecycle.Timers(st) {
			v, out := lifecycle.DecideTimer(st, tm, tm.Due)
			require.Equal(t, lifecycle.Fire.String(), v.String(), "state %d timer %s", i, tm.ID)
			require.NotEmpty(t, out)
		}
	}
}
