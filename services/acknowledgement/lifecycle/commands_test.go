package lifecycle_test

import (
	"testing"
	"time"

	"github.com/herald-health/herald/platform/eventtype"
	"github.com/herald-health/herald/platform/fault"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"github.com/stretchr/testify/require"
)

var now = t0.Add(10 * time.Minute)

type decideFunc func(st *lifecycle.State) (lifecycle.Decision, error)

func acknowledge(who, req string) decideFunc {
	return func(st *lifecycle.State) (lifecycle.Decision, error) {
		return lifecycle.DecideAcknowledge(st, alertID, lifecycle.Acknowledge{Actor: person(who), RequestID: req, Via: "link"}, now)
	}
}

func decline(who, req string, r eventsv1.DeclineReason, note string) decideFunc {
	return func(st *lifecycle.State) (lifecycle.Decision, error) {
		return lifecycle.DecideDecline(st, alertID, lifecycle.Decline{Actor: person(who), RequestID: req, Reason: r, Note: note}, now)
	}
}

func action(who, req, what string) decideFunc {
	return func(st *lifecycle.State) (lifecycle.Decision, error) {
		return lifecycle.DecideRecordAction(st, alertID, lifecycle.RecordAction{Actor: person(who), RequestID: req, Action: what}, now)
	}
}

func markRead(who, req string) decideFunc {
	return func(st *lifecycle.State) (lifecycle.Decision, error) {
		return lifecycle.DecideMarkRead(st, alertID, lifecycle.MarkRead{Actor: person(who), RequestID: req}, now)
	}
}

func closeBy(a *eventsv1.Actor, req, reason string) decideFunc {
	return func(st *lifecycle.State) (lifecycle.Decision, error) {
		return lifecycle.DecideClose(st, alertID, lifecycle.Close{Actor: a, RequestID: req, Reason: reason}, now)
	}
}

func TestCommands(t *testing.T) {
	cancelled := evs(raised(), routed(), ev("c", time.Minute, &eventsv1.AlertCancelled{}))
	acked := evs(raised(), routed(), ack("k1", "dr-a", 0))
	inFailsafe := evs(raised(), routed(), ev("f", 3*time.Hour, &eventsv1.FailsafeQueued{}))
	open := evs(raised(), routed(), sent("s1", 0, 0, "dr-a"))
	tests := []struct {
		name    string
		given   []*eventsv1.Event
		when    decideFunc
		kind    error  // expected fault kind, nil for success
		msg     string // substring of the error
		payload string // event type on success
		state   string // state after folding the decision
	}{
		{name: "acknowledge open alert", given: open, when: acknowledge("dr-a", "r1"), payload: "AlertAcknowledged", state: "STATE_ACKNOWLEDGED"},
		{name: "acknowledge in fail-safe is recorded and stays queued", given: inFailsafe, when: acknowledge("fs", "r1"), payload: "AlertAcknowledged", state: "STATE_FAILSAFE"},
		{name: "acknowledge in fail-safe twice", given: append(evs(inFailsafe...), ack("k1", "dr-a", 0)), when: acknowledge("dr-b", "r2"),
			kind: fault.ErrFailedPrecondition, msg: "stays in the fail-safe queue until a failsafe-officer closes it"},
		{name: "acknowledge cancelled", given: cancelled, when: acknowledge("dr-a", "r1"), kind: fault.ErrFailedPrecondition, msg: "alert is CANCELLED"},
		{name: "acknowledge acknowledged", given: acked, when: acknowledge("dr-b", "r2"), kind: fault.ErrFailedPrecondition, msg: "alert is ACKNOWLEDGED"},
		{name: "acknowledge raised", given: evs(raised()), when: acknowledge("dr-a", "r1"), kind: fault.ErrFailedPrecondition, msg: "alert is RAISED"},
		{name: "acknowledge unknown", when: acknowledge("dr-a", "r1"), kind: fault.ErrNotFound},
		{name: "acknowledge without person", given: open, when: acknowledge("", "r1"), kind: fault.ErrInvalid, msg: "actor.person_id"},
		{name: "acknowledge without request id", given: open, when: acknowledge("dr-a", ""), kind: fault.ErrInvalid, msg: "request_id"},
		{name: "acknowledge replayed", given: acked, when: acknowledge("dr-a", "req-k1"), kind: nil, state: "STATE_ACKNOWLEDGED"},
		{name: "request id reused for another command", given: acked, when: markRead("dr-a", "req-k1"), kind: fault.ErrAlreadyExists},
		{name: "decline open alert", given: open, when: decline("dr-a", "r1", eventsv1.DeclineReason_DECLINE_REASON_LEFT_POST, ""), payload: "AlertDeclined", state: "STATE_DECLINED"},
		{name: "decline without reason", given: open, when: decline("dr-a", "r1", 0, ""), kind: fault.ErrInvalid, msg: "reason"},
		{name: "decline unknown reason", given: open, when: decline("dr-a", "r1", 99, ""), kind: fault.ErrInvalid, msg: "reason"},
		{name: "decline other without note", given: open, when: decline("dr-a", "r1", eventsv1.DeclineReason_DECLINE_REASON_OTHER, ""), kind: fault.ErrInvalid, msg: "note"},
		{name: "decline other with note", given: open, when: decline("dr-a", "r1", eventsv1.DeclineReason_DECLINE_REASON_OTHER, "on leave"), payload: "AlertDeclined", state: "STATE_DECLINED"},
		{name: "decline in fail-safe", given: inFailsafe, when: decline("fs", "r1", eventsv1.DeclineReason_DECLINE_REASON_WRONG_TEAM, ""), kind: fault.ErrFailedPrecondition, msg: "alert is FAILSAFE"},
		{name: "decline acknowledged", given: acked, when: decline("dr-b", "r1", eventsv1.DeclineReason_DECLINE_REASON_WRONG_TEAM, ""), kind: fault.ErrFailedPrecondition, msg: "alert is ACKNOWLEDGED"},
		{name: "action on acknowledged", given: acked, when: action("dr-a", "r1", "CT booked"), payload: "ActionRecorded", state: "STATE_ACTIONED"},
		{name: "action before acknowledgement", given: open, when: action("dr-a", "r1", "CT booked"), kind: fault.ErrFailedPrecondition, msg: "alert is NOTIFIED"},
		{name: "action without text", given: acked, when: action("dr-a", "r1", " "), kind: fault.ErrInvalid, msg: "action"},
		{name: "mark read", given: open, when: markRead("dr-a", "r1"), payload: "AlertRead", state: "STATE_READ"},
		{name: "mark read acknowledged keeps it acknowledged", given: acked, when: markRead("dr-a", "r1"), payload: "AlertRead", state: "STATE_ACKNOWLEDGED"},
		{name: "mark read cancelled", given: cancelled, when: markRead("dr-a", "r1"), kind: fault.ErrFailedPrecondition, msg: "alert is CANCELLED"},
		{name: "close by officer", given: inFailsafe, when: closeBy(officer("fso"), "r1", "duplicate of another alert"), payload: "AlertClosed", state: "STATE_CLOSED"},
		{name: "close by clinician", given: inFailsafe, when: closeBy(person("dr-a"), "r1", "done"), kind: fault.ErrPermissionDenied},
		{name: "close without reason", given: inFailsafe, when: closeBy(officer("fso"), "r1", ""), kind: fault.ErrInvalid, msg: "reason"},
		{name: "close cancelled", given: cancelled, when: closeBy(officer("fso"), "r1", "x"), kind: fault.ErrFailedPrecondition, msg: "alert is CANCELLED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			given := fold(tt.given...)
			d, err := tt.when(given)
			if tt.kind != nil {
				require.ErrorIs(t, err, tt.kind)
				require.ErrorContains(t, err, tt.msg)
				return
			}
			require.NoError(t, err)
			if tt.payload == "" { // replayed
				require.True(t, d.Replayed)
				require.Nil(t, d.Event)
				require.NotEmpty(t, d.EventID)
				return
			}
			require.False(t, d.Replayed)
			require.Equal(t, tt.payload, eventtype.Of(d.Event))
			require.Equal(t, alertID, d.Event.AlertId)
			require.Equal(t, "RZZ", d.Event.Tenant)
			require.Equal(t, d.EventID, d.Event.EventId)
			after, applied := lifecycle.Apply(given, d.Event, lifecycle.Position{Offset: int64(len(tt.given))})
			require.True(t, applied)
			require.Equal(t, tt.state, after.State.String())
			// The same request decided again on the new state is a replay of the same event.
			again, err := tt.when(after)
			require.NoError(t, err)
			require.True(t, again.Replayed)
			require.Equal(t, d.EventID, again.EventID)
		})
	}
}

func TestCommandEventIDsAreDeterministic(t *testing.T) {
	st := fold(raised(), routed())
	a, err := acknowledge("dr-a", "r1")(st)
	require.NoError(t, err)
	b, err := acknowledge("dr-a", "r1")(st)
	require.NoError(t, err)
	require.Equal(t, a.EventID, b.EventID)
	c, err := acknowledge("dr-a", "r2")(st)
	require.NoError(t, err)
	require.NotEqual(t, a.EventID, c.EventID)
}
