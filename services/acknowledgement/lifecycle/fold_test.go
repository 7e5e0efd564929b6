package lifecycle_test

import (
	"testing"
	"time"

	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
)

const (
	reasonTimeout  = eventsv1.EscalationReason_ESCALATION_REASON_TIMEOUT
	reasonRepeat   = eventsv1.EscalationReason_ESCALATION_REASON_REPEAT
	reasonDeclined = eventsv1.EscalationReason_ESCALATION_REASON_DECLINED
	clockAck       = eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE
	clockComm      = eventsv1.ClockKind_CLOCK_KIND_COMMUNICATE
	clockAction    = eventsv1.ClockKind_CLOCK_KIND_ACTION
)

func TestFold(t *testing.T) {
	tests := []struct {
		name     string
		given    []*eventsv1.Event
		when     *eventsv1.Event
		state    ackv1.State
		noEffect bool
		check    func(t *testing.T, st *lifecycle.State)
	}{
		{name: "raised", when: raised(), state: lifecycle.Raised},
		{name: "quarantined", when: ev("q", 0, &eventsv1.AlertQuarantined{}), state: lifecycle.Quarantined},
		{name: "routed starts step 0", given: evs(raised()), when: routed(), state: lifecycle.Routed,
			check: func(t *testing.T, st *lifecycle.State) {
				require.Equal(t, uint32(0), st.Step)
				require.Equal(t, uint32(1), st.Round)
				require.Equal(t, t0.Add(time.Second+15*time.Minute), st.StepDueAt.AsTime())
				require.Equal(t, eventsv1.Category_CATEGORY_CRITICAL, st.Category)
				require.Equal(t, "rzz-failsafe", st.FailsafeQueue)
			}},
		{name: "quarantined then routed", given: evs(ev("q", 0, &eventsv1.AlertQuarantined{})), when: routed(), state: lifecycle.Routed},
		{name: "sent for current step notifies", given: evs(raised(), routed()), when: sent("s1", 0, 0, "dr-a"), state: lifecycle.Notified,
			check: func(t *testing.T, st *lifecycle.State) { require.Equal(t, []string{"dr-a"}, st.StepRecipients) }},
		{name: "sent for an old step changes nothing", given: evs(raised(), routed(), escalated("e1", time.Hour, 0, 1, 0, reasonTimeout)),
			when: sent("s0", 0, 0, "dr-a"), state: lifecycle.Escalated},
		{name: "delivered", given: evs(raised(), routed(), sent("s1", 0, 0, "dr-a")), when: ev("d1", 3*time.Second, &eventsv1.NotificationDelivered{}),
			state: lifecycle.Delivered, check: func(t *testing.T, st *lifecycle.State) { require.True(t, st.Communicated) }},
		{name: "read", given: evs(raised(), routed(), sent("s1", 0, 0, "dr-a")), when: ev("r1", time.Minute, &eventsv1.AlertRead{Actor: person("dr-a"), RequestId: "r"}),
			state: lifecycle.Read},
		{name: "acknowledged", given: evs(raised(), routed(), sent("s1", 0, 0, "dr-a")), when: ack("k1", "dr-a", 0), state: lifecycle.Acknowledged,
			check: func(t *testing.T, st *lifecycle.State) {
				require.Equal(t, "dr-a", st.AcknowledgedBy.PersonId)
				require.NotNil(t, st.AcknowledgedAt)
			}},
		{name: "second acknowledgement has no effect", given: evs(raised(), routed(), ack("k1", "dr-a", 0)), when: ack("k2", "dr-b", 0),
			state: lifecycle.Acknowledged, noEffect: true,
			check: func(t *testing.T, st *lifecycle.State) { require.Equal(t, "dr-a", st.AcknowledgedBy.PersonId) }},
		{name: "acknowledging a cancelled alert has no effect", given: evs(raised(), routed(), ev("c", time.Minute, &eventsv1.AlertCancelled{})),
			when: ack("k1", "dr-a", 0), state: lifecycle.Cancelled, noEffect: true},
		{name: "acknowledged in the fail-safe queue stays queued", given: evs(raised(), routed(), ev("f", time.Hour, &eventsv1.FailsafeQueued{Queue: "q"})),
			when: ack("k1", "fs-1", 0), state: lifecycle.Failsafe,
			check: func(t *testing.T, st *lifecycle.State) {
				require.Equal(t, "fs-1", st.AcknowledgedBy.GetPersonId())
				require.False(t, lifecycle.ObligationOpen(st, clockAck), "the acknowledge clock stops")
			}},
		{name: "second acknowledgement in the fail-safe queue has no effect",
			given: evs(raised(), routed(), ev("f", time.Hour, &eventsv1.FailsafeQueued{Queue: "q"}), ack("k1", "fs-1", 0)),
			when:  ack("k2", "dr-b", 0), state: lifecycle.Failsafe, noEffect: true},
		{name: "action in the fail-safe queue stays queued",
			given: evs(raised(), routed(), ev("f", time.Hour, &eventsv1.FailsafeQueued{Queue: "q"}), ack("k1", "fs-1", 0)),
			when:  ev("act", 2*time.Hour, &eventsv1.ActionRecorded{Actor: person("fs-1"), Action: "CT booked"}), state: lifecycle.Failsafe,
			check: func(t *testing.T, st *lifecycle.State) { require.NotNil(t, st.ActionedAt) }},
		{name: "closed after an acknowledgement in the fail-safe queue",
			given: evs(raised(), routed(), ev("f", time.Hour, &eventsv1.FailsafeQueued{Queue: "q"}), ack("k1", "fs-1", 0)),
			when:  ev("cl", 4*time.Hour, &eventsv1.AlertClosed{Actor: officer("fso"), Reason: "acted on"}), state: lifecycle.Closed},
		{name: "all-must needs everyone", given: evs(raised(), allMustRouted(), resolved("r0", 0, 0, "dr-a", "dr-b"), sent("s1", 0, 0, "dr-a"), sent("s2", 0, 0, "dr-b")),
			when: ack("k1", "dr-a", 0), state: lifecycle.Notified,
			check: func(t *testing.T, st *lifecycle.State) { require.Equal(t, []string{"dr-a"}, st.StepAcknowledgers) }},
		{name: "all-must counts resolved recipients whose send is not yet recorded",
			given: evs(raised(), allMustRouted(), resolved("r0", 0, 0, "dr-a", "dr-b"), sent("s1", 0, 0, "dr-a")),
			when:  ack("k1", "dr-a", 0), state: lifecycle.Notified},
		{name: "all-must is not complete before its recipients are resolved",
			given: evs(raised(), allMustRouted(), sent("s1", 0, 0, "dr-a")),
			when:  ack("k1", "dr-a", 0), state: lifecycle.Notified},
		{name: "all-must completes when the resolution follows every acknowledgement",
			given: evs(raised(), allMustRouted(), ack("k1", "dr-a", 0)),
			when:  resolved("r0", 0, 0, "dr-a"), state: lifecycle.Acknowledged,
			check: func(t *testing.T, st *lifecycle.State) { require.Equal(t, "dr-a", st.AcknowledgedBy.GetPersonId()) }},
		{name: "all-must complete", given: evs(raised(), allMustRouted(), resolved("r0", 0, 0, "dr-a", "dr-b"), sent("s1", 0, 0, "dr-a"), sent("s2", 0, 0, "dr-b"), ack("k1", "dr-a", 0)),
			when: ack("k2", "dr-b", 0), state: lifecycle.Acknowledged},
		{name: "resolution of an old step has no effect", given: evs(raised(), allMustRouted(), escalated("e1", time.Hour, 0, 1, 0, reasonTimeout)),
			when: resolved("r0", 0, 0, "dr-a"), state: lifecycle.Escalated, noEffect: true},
		{name: "declined at current step", given: evs(raised(), routed(), sent("s1", 0, 0, "dr-a")),
			when:  ev("x", time.Minute, &eventsv1.AlertDeclined{Actor: person("dr-a"), Step: 0, Reason: eventsv1.DeclineReason_DECLINE_REASON_WRONG_TEAM}),
			state: lifecycle.Declined},
		{name: "decline of an old step has no effect", given: evs(raised(), routed(), escalated("e1", time.Hour, 0, 1, 0, reasonTimeout)),
			when:  ev("x", time.Minute, &eventsv1.AlertDeclined{Actor: person("dr-a"), Step: 0, Reason: eventsv1.DeclineReason_DECLINE_REASON_WRONG_TEAM}),
			state: lifecycle.Escalated, noEffect: true},
		{name: "action after acknowledgement", given: evs(raised(), routed(), ack("k1", "dr-a", 0)),
			when: ev("act", time.Hour, &eventsv1.ActionRecorded{Actor: person("dr-a"), Action: "CT booked"}), state: lifecycle.Actioned,
			check: func(t *testing.T, st *lifecycle.State) { require.NotNil(t, st.ActionedAt) }},
		{name: "action before acknowledgement has no effect", given: evs(raised(), routed()),
			when: ev("act", time.Hour, &eventsv1.ActionRecorded{Actor: person("dr-a"), Action: "x"}), state: lifecycle.Routed, noEffect: true},
		{name: "repeat", given: evs(raised(), routed()), when: escalated("e1", 16*time.Minute, 0, 0, 1, reasonRepeat), state: lifecycle.Escalated,
			check: func(t *testing.T, st *lifecycle.State) {
				require.Equal(t, uint32(0), st.Step)
				require.Equal(t, uint32(1), st.Repeat)
				require.Equal(t, t0.Add(31*time.Minute), st.StepDueAt.AsTime())
			}},
		{name: "next step clears recipients", given: evs(raised(), routed(), sent("s1", 0, 0, "dr-a")), when: escalated("e1", time.Hour, 0, 1, 0, reasonTimeout),
			state: lifecycle.Escalated, check: func(t *testing.T, st *lifecycle.State) {
				require.Equal(t, uint32(1), st.Step)
				require.Empty(t, st.StepRecipients)
				require.Equal(t, t0.Add(90*time.Minute), st.StepDueAt.AsTime())
			}},
		{name: "escalation after acknowledgement has no effect", given: evs(raised(), routed(), ack("k1", "dr-a", 0)),
			when: escalated("e1", time.Hour, 0, 1, 0, reasonTimeout), state: lifecycle.Acknowledged, noEffect: true},
		{name: "stale escalation has no effect", given: evs(raised(), routed(), escalated("e1", time.Hour, 0, 1, 0, reasonTimeout)),
			when: escalated("e0", time.Hour, 0, 0, 1, reasonRepeat), state: lifecycle.Escalated, noEffect: true,
			check: func(t *testing.T, st *lifecycle.State) { require.Equal(t, uint32(1), st.Step) }},
		{name: "escalation beyond the policy has no effect", given: evs(raised(), routed()),
			when: escalated("e9", time.Hour, 0, 9, 0, reasonTimeout), state: lifecycle.Routed, noEffect: true},
		{name: "breach", given: evs(raised(), routed()), when: breach("b", clockAck, 2*time.Hour), state: lifecycle.Routed,
			check: func(t *testing.T, st *lifecycle.State) { require.Equal(t, []eventsv1.ClockKind{clockAck}, st.Breached) }},
		{name: "breach with another deadline has no effect", given: evs(raised(), routed()), when: breach("b", clockAck, 3*time.Hour),
			state: lifecycle.Routed, noEffect: true},
		{name: "breach after acknowledgement has no effect", given: evs(raised(), routed(), ack("k1", "dr-a", 0)), when: breach("b", clockAck, 2*time.Hour),
			state: lifecycle.Acknowledged, noEffect: true},
		{name: "action breach after acknowledgement", given: evs(raised(), routed(), ack("k1", "dr-a", 0)), when: breach("b", clockAction, 24*time.Hour),
			state: lifecycle.Acknowledged},
		{name: "fail-safe", given: evs(raised(), routed()), when: ev("f", 3*time.Hour, &eventsv1.FailsafeQueued{Queue: "rzz-failsafe", LastStep: 2}),
			state: lifecycle.Failsafe, check: func(t *testing.T, st *lifecycle.State) { require.Nil(t, st.StepDueAt) }},
		{name: "fail-safe after acknowledgement has no effect", given: evs(raised(), routed(), ack("k1", "dr-a", 0)),
			when: ev("f", 3*time.Hour, &eventsv1.FailsafeQueued{}), state: lifecycle.Acknowledged, noEffect: true},
		{name: "closed", given: evs(raised(), routed(), ev("f", 3*time.Hour, &eventsv1.FailsafeQueued{})),
			when: ev("cl", 4*time.Hour, &eventsv1.AlertClosed{Actor: officer("fso"), Reason: "duplicate"}), state: lifecycle.Closed},
		{name: "cancelled", given: evs(raised(), routed(), ack("k1", "dr-a", 0)), when: ev("c", time.Hour, &eventsv1.AlertCancelled{}), state: lifecycle.Cancelled},
		{name: "routed after cancel has no effect", given: evs(raised(), ev("c", time.Minute, &eventsv1.AlertCancelled{})), when: routed(),
			state: lifecycle.Cancelled, noEffect: true},
		{name: "a new report after a cancel re-opens the alert", given: evs(raised(), routed(), ack("k1", "dr-a", 0), breach("b", clockAction, 24*time.Hour), ev("c", 25*time.Hour, &eventsv1.AlertCancelled{})),
			when: ev("raised-2", 26*time.Hour, &eventsv1.AlertRaised{}), state: lifecycle.Raised,
			check: func(t *testing.T, st *lifecycle.State) {
				require.Equal(t, uint32(1), st.Reopened)
				require.Nil(t, st.AcknowledgedBy)
				require.Nil(t, st.AcknowledgedAt)
				require.Nil(t, st.ClosedAt)
				require.Nil(t, st.Clocks, "no clock runs until the new routing")
				require.Empty(t, st.Breached)
				require.Empty(t, lifecycle.Timers(st))
			}},
		{name: "a new report after a close re-opens the alert",
			given: evs(raised(), routed(), ev("f", 3*time.Hour, &eventsv1.FailsafeQueued{}), ev("cl", 4*time.Hour, &eventsv1.AlertClosed{Actor: officer("fso"), Reason: "done"})),
			when:  ev("q-2", 5*time.Hour, &eventsv1.AlertQuarantined{}), state: lifecycle.Quarantined,
			check: func(t *testing.T, st *lifecycle.State) { require.Equal(t, uint32(1), st.Reopened) }},
		{name: "the routing of a re-opened alert runs its own ladder",
			given: evs(raised(), routed(), escalated("e1", time.Hour, 0, 1, 0, reasonTimeout), ev("c", 2*time.Hour, &eventsv1.AlertCancelled{}), ev("raised-2", 3*time.Hour, &eventsv1.AlertRaised{})),
			when:  reroute("routed-2", 3*time.Hour+time.Second), state: lifecycle.Routed,
			check: func(t *testing.T, st *lifecycle.State) {
				require.Equal(t, uint32(2), st.Round)
				require.Equal(t, uint32(0), st.Step)
				require.Len(t, lifecycle.Timers(st), 4, "step timer and three clocks")
			}},
		{name: "an amendment after a cancel has no effect", given: evs(raised(), routed(), ev("c", time.Hour, &eventsv1.AlertCancelled{})),
			when: ev("am", 2*time.Hour, &eventsv1.AlertAmended{}), state: lifecycle.Cancelled, noEffect: true},
		{name: "re-route restarts the ladder in a new round", given: evs(raised(), routed(), escalated("e1", time.Hour, 0, 1, 0, reasonTimeout)),
			when: reroute("routed-2", 2*time.Hour), state: lifecycle.Routed, check: func(t *testing.T, st *lifecycle.State) {
				require.Equal(t, uint32(2), st.Round)
				require.Equal(t, uint32(0), st.Step)
			}},
		{name: "re-route of an acknowledged alert keeps it acknowledged", given: evs(raised(), routed(), ack("k1", "dr-a", 0)),
			when: reroute("routed-2", 2*time.Hour), state: lifecycle.Acknowledged},
		{name: "amended", given: evs(raised(), routed()), when: ev("am", time.Minute, &eventsv1.AlertAmended{}), state: lifecycle.Routed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			given := fold(tt.given...)
			before := proto.Clone(given)
			got, applied := lifecycle.Apply(given, tt.when, lifecycle.Position{Partition: 0, Offset: int64(len(tt.given))})
			require.True(t, applied)
			require.True(t, proto.Equal(before, given), "Apply mutated its input")
			require.Equal(t, tt.state.String(), got.State.String())
			last := got.Timeline[len(got.Timeline)-1]
			require.Equal(t, tt.when.EventId, last.EventId)
			require.Equal(t, tt.noEffect, last.NoEffect, "no_effect")
			require.Equal(t, tt.when.EventId, got.LastEventId)
			require.Equal(t, int64(len(tt.given)), got.Offset)
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

func TestFoldSkipsDuplicatesAndReplays(t *testing.T) {
	st := fold(raised(), routed(), sent("s1", 0, 0, "dr-a"))
	// Same event id again at a later offset (a retried append): skipped.
	again, applied := lifecycle.Apply(st, sent("s1", 0, 0, "dr-a"), lifecycle.Position{Offset: 10})
	require.False(t, applied)
	require.Same(t, st, again)
	// A new event at an offset the state already reflects (a redelivery): skipped.
	again, applied = lifecycle.Apply(st, ack("k1", "dr-a", 0), lifecycle.Position{Offset: 2})
	require.False(t, applied)
	require.Equal(t, lifecycle.Notified, again.State)
	// Same events, same state.
	require.True(t, proto.Equal(st, fold(raised(), routed(), sent("s1", 0, 0, "dr-a"))))
}

func TestFoldFirstCommandInLogWins(t *testing.T) {
	decline := ev("x", time.Minute, &eventsv1.AlertDeclined{Actor: person("dr-b"), Step: 0, Reason: eventsv1.DeclineReason_DECLINE_REASON_NOT_MY_PATIENT})
	ackFirst := fold(raised(), routed(), ack("k1", "dr-a", 0), decline)
	require.Equal(t, lifecycle.Acknowledged, ackFirst.State)
	require.True(t, ackFirst.Timeline[3].NoEffect)

	declineFirst := fold(raised(), routed(), decline, ack("k1", "dr-a", 0))
	require.Equal(t, lifecycle.Acknowledged, declineFirst.State, "a decline does not stop another person accepting")

	escFirst := fold(raised(), routed(), escalated("e1", time.Hour, 0, 1, 0, reasonTimeout), ack("k1", "dr-a", 0))
	require.Equal(t, lifecycle.Acknowledged, escFirst.State)
	require.Equal(t, uint32(1), escFirst.Step)
	ackFirst = fold(raised(), routed(), ack("k1", "dr-a", 0), escalated("e1", time.Hour, 0, 1, 0, reasonTimeout))
	require.Equal(t, lifecycle.Acknowledged, ackFirst.State)
	require.Equal(t, uint32(0), ackFirst.Step)
}

func evs(e ...*eventsv1.Event) []*eventsv1.Event { return e }

func allMustRouted() *eventsv1.Event {
	e := routed()
	e.GetAlertRouted().Policy.Steps[0].AckMode = eventsv1.AckMode_ACK_MODE_ALL_MUST
	return e
}

func resolved(id string, stepN, repeat uint32, people ...string) *eventsv1.Event {
	return ev(id, 2*time.Second, &eventsv1.StepRecipientsResolved{Step: stepN, Repeat: repeat, PersonIds: people})
}

func reroute(id string, d time.Duration) *eventsv1.Event {
	e := routed()
	e.EventId = id
	e.OccurredAt = at(d)
	return e
}

func breach(id string, k eventsv1.ClockKind, deadline time.Duration) *eventsv1.Event {
	return ev(id, deadline, &eventsv1.SLABreached{Clock: k, Deadline: at(deadline)})
}
