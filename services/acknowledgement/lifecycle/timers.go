package lifecycle

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TimerKind says what a timer guards.
type TimerKind int

// Timer kinds (zero is unspecified).
const (
	// TimerStep is the timeout of the current escalation step and repeat.
	TimerStep TimerKind = iota + 1
	// TimerClock is one of the category's clocks.
	TimerClock
)

// Timer is an SLA timer the state asks for. An alert has at most one step
// timer (its id does not change from step to step: arming it again moves
// the deadline) and one timer per clock.
type Timer struct {
	ID      string
	AlertID string
	Kind    TimerKind
	// Round, Step and Repeat identify the step timeout (TimerStep) or the
	// routing the clock belongs to (TimerClock).
	Round  uint32
	Step   uint32
	Repeat uint32
	Clock  eventsv1.ClockKind
	Due    time.Time
}

// StepTimerID is the id of an alert's step timer.
func StepTimerID(alertID string) string { return alertID + ":step" }

// ClockTimerID is the id of an alert's timer for clock k.
func ClockTimerID(alertID string, k eventsv1.ClockKind) string {
	return alertID + ":clock:" + strconv.Itoa(int(k))
}

// AlertOfTimer returns the alert id of a timer id.
func AlertOfTimer(id string) string {
	if i := strings.Index(id, ":"); i >= 0 {
		return id[:i]
	}
	return id
}

// Timers returns the timers the state needs armed, step timer first. A
// closed or cancelled alert needs none; an acknowledged one needs only its
// open clocks; an alert in the fail-safe queue keeps its clocks (a breach is
// still recorded) but no step timer.
func Timers(st *State) []Timer {
	if st == nil || IsTerminal(st) {
		return nil
	}
	var out []Timer
	if escalating(st) && st.GetStepDueAt() != nil {
		out = append(out, Timer{
			ID: StepTimerID(st.AlertId), AlertID: st.AlertId, Kind: TimerStep,
			Round: st.Round, Step: st.Step, Repeat: st.Repeat, Due: st.StepDueAt.AsTime(),
		})
	}
	for _, k := range clockKinds {
		d := Deadline(st, k)
		if d.IsZero() || !ObligationOpen(st, k) || Breached(st, k) {
			continue
		}
		out = append(out, Timer{
			ID: ClockTimerID(st.AlertId, k), AlertID: st.AlertId, Kind: TimerClock,
			Round: st.Round, Clock: k, Due: d,
		})
	}
	return out
}

// TimerPlan is what to change in the timer store after a state change.
type TimerPlan struct {
	Arm    []Timer
	Cancel []string
}

// PlanTimers compares the timers before and after a state change: timers
// that are new or whose identity or deadline changed are armed; timers no
// longer needed are cancelled.
func PlanTimers(before, after *State) TimerPlan {
	prev := map[string]Timer{}
	for _, t := range Timers(before) {
		prev[t.ID] = t
	}
	var p TimerPlan
	for _, t := range Timers(after) {
		if old, ok := prev[t.ID]; !ok || old != t {
			p.Arm = append(p.Arm, t)
		}
		delete(prev, t.ID)
	}
	for _, t := range Timers(before) {
		if _, ok := prev[t.ID]; ok {
			p.Cancel = append(p.Cancel, t.ID)
		}
	}
	return p
}

// Verdict is what a fired timer means.
type Verdict int

// Verdicts (zero is unspecified).
const (
	// Fire: append the events; then the timer is done.
	Fire Verdict = iota + 1
	// Stale: the timer no longer matters (acknowledged, closed, cancelled,
	// moved on, obligation met): drop it.
	Stale
	// Behind: the projection has not yet caught up with the event that
	// armed the timer (or the timer fired early): try again later rather
	// than decide on stale state.
	Behind
)

func (v Verdict) String() string {
	switch v {
	case Fire:
		return "fire"
	case Stale:
		return "stale"
	case Behind:
		return "behind"
	}
	return "unspecified"
}

// DecideTimer decides what a fired timer means given the current state of
// its alert (nil: not yet in the projection).
//
// A step timer whose step and repeat are current escalates: the same step
// again while repeat < the step's repeats (reason REPEAT), else the next step
// (reason TIMEOUT), else FailsafeQueued when the policy is exhausted. A clock
// timer whose obligation is still open gives SLABreached. Event ids are
// deterministic: escalated = EventID(alert, "escalated", round, to step,
// repeat); failsafe = EventID(alert, "failsafe", round); breached =
// EventID(alert, "breached", clock, deadline ms).
func DecideTimer(st *State, t Timer, now time.Time) (Verdict, []*eventsv1.Event) {
	if now.Before(t.Due) {
		return Behind, nil
	}
	if st == nil || st.State == 0 || st.Round < t.Round {
		if st != nil && IsTerminal(st) {
			return Stale, nil
		}
		return Behind, nil
	}
	if IsTerminal(st) {
		return Stale, nil
	}
	switch t.Kind {
	case TimerStep:
		if st.Round > t.Round || ahead(st.Step, st.Repeat, t.Step, t.Repeat) {
			return Stale, nil
		}
		if ahead(t.Step, t.Repeat, st.Step, st.Repeat) {
			return Behind, nil
		}
		if !escalating(st) {
			return Stale, nil
		}
		steps := st.GetPolicy().GetSteps()
		if int(st.Step) < len(steps) && st.Repeat < steps[st.Step].GetRepeats() {
			return Fire, []*eventsv1.Event{escalation(st, st.Step, st.Repeat+1, eventsv1.EscalationReason_ESCALATION_REASON_REPEAT, now, "timeout")}
		}
		return Fire, []*eventsv1.Event{next(st, eventsv1.EscalationReason_ESCALATION_REASON_TIMEOUT, now, "timeout")}
	case TimerClock:
		d := Deadline(st, t.Clock)
		if d.IsZero() || !d.Equal(t.Due) || !ObligationOpen(st, t.Clock) || Breached(st, t.Clock) {
			return Stale, nil
		}
		ev := &eventsv1.Event{Payload: &eventsv1.Event_SlaBreached{SlaBreached: &eventsv1.SLABreached{
			Clock: t.Clock, Deadline: timestamppb.New(d), Step: st.Step,
		}}}
		envelope(st, ev, EventID(st.AlertId, "breached", strconv.Itoa(int(t.Clock)), strconv.FormatInt(d.UnixMilli(), 10)), "timer:"+t.ID, now)
		return Fire, []*eventsv1.Event{ev}
	}
	return Stale, nil
}

// React returns the events the lifecycle owes at once after ev was applied
// and produced st: a decline of the current step, or a notification failure
// that leaves nobody reachable at the current step, escalates to the next
// step (or the fail-safe queue); a routing without steps goes straight to the
// fail-safe queue. Event ids are those of DecideTimer, so a timer firing at
// the same moment decides the same event.
func React(st *State, ev *eventsv1.Event, now time.Time) []*eventsv1.Event {
	if st == nil || !escalating(st) {
		return nil
	}
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_AlertDeclined:
		if st.State == Declined && p.AlertDeclined.GetStep() == st.Step {
			return []*eventsv1.Event{next(st, eventsv1.EscalationReason_ESCALATION_REASON_DECLINED, now, ev.GetEventId())}
		}
	case *eventsv1.Event_NotificationFailed:
		f := p.NotificationFailed
		if f.GetStepFailed() && f.GetStep() == st.Step && f.GetRepeat() == st.Repeat {
			return []*eventsv1.Event{next(st, eventsv1.EscalationReason_ESCALATION_REASON_DELIVERY_FAILED, now, ev.GetEventId())}
		}
	case *eventsv1.Event_AlertRouted:
		if len(st.GetPolicy().GetSteps()) == 0 {
			return []*eventsv1.Event{failsafe(st, "policy has no steps", now, ev.GetEventId())}
		}
	}
	return nil
}

// next escalates to the next step, or queues for fail-safe after the last.
func next(st *State, reason eventsv1.EscalationReason, now time.Time, cause string) *eventsv1.Event {
	if int(st.Step)+1 < len(st.GetPolicy().GetSteps()) {
		return escalation(st, st.Step+1, 0, reason, now, cause)
	}
	return failsafe(st, fmt.Sprintf("policy exhausted (%s)", reasonName(reason)), now, cause)
}

func escalation(st *State, to, repeat uint32, reason eventsv1.EscalationReason, now time.Time, cause string) *eventsv1.Event {
	ev := &eventsv1.Event{Payload: &eventsv1.Event_AlertEscalated{AlertEscalated: &eventsv1.AlertEscalated{
		FromStep: st.Step, ToStep: to, Reason: reason, Repeat: repeat,
	}}}
	envelope(st, ev, EventID(st.AlertId, "escalated", u32(st.Round), u32(to), u32(repeat)), cause, now)
	return ev
}

func failsafe(st *State, reason string, now time.Time, cause string) *eventsv1.Event {
	ev := &eventsv1.Event{Payload: &eventsv1.Event_FailsafeQueued{FailsafeQueued: &eventsv1.FailsafeQueued{
		Queue: st.GetFailsafeQueue(), LastStep: st.Step, Reason: reason,
	}}}
	envelope(st, ev, EventID(st.AlertId, "failsafe", u32(st.Round)), cause, now)
	return ev
}

func reasonName(r eventsv1.EscalationReason) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "ESCALATION_REASON_"))
}

// NextDeadline returns the earliest deadline of the timers st needs, and
// false when it needs none. The projection store indexes alerts by it, so
// that the overdue watchdog finds late alerts without the timer store.
func NextDeadline(st *State) (time.Time, bool) {
	ts := Timers(st)
	if len(ts) == 0 {
		return time.Time{}, false
	}
	due := ts[0].Due
	for _, t := range ts[1:] {
		if t.Due.Before(due) {
			due = t.Due
		}
	}
	return due, true
}

// Repaired returns the TimerRepaired event the overdue watchdog appends
// when st's next deadline passed more than a bound ago with nothing
// decided (its timer was lost), before it arms the timer again. Its id is
// deterministic per alert and deadline (EventID(alert, "timer-repaired",
// round, step, repeat, deadline ms)), so replicas that repair the same
// deadline append one event. ok is false when st needs no timer.
func Repaired(st *State, now time.Time) (ev *eventsv1.Event, ok bool) {
	due, ok := NextDeadline(st)
	if !ok {
		return nil, false
	}
	var names []string
	for _, t := range Timers(st) {
		if t.Due.After(now) {
			continue
		}
		if t.Kind == TimerStep {
			names = append(names, "step")
		} else {
			names = append(names, "clock:"+strings.TrimPrefix(t.Clock.String(), "CLOCK_KIND_"))
		}
	}
	ev = &eventsv1.Event{Payload: &eventsv1.Event_TimerRepaired{TimerRepaired: &eventsv1.TimerRepaired{
		Deadline: timestamppb.New(due), OverdueBy: durationpb.New(now.Sub(due)), Step: st.GetStep(), Repeat: st.GetRepeat(), Timers: names,
	}}}
	envelope(st, ev, EventID(st.GetAlertId(), "timer-repaired", u32(st.GetRound()), u32(st.GetStep()), u32(st.GetRepeat()),
		strconv.FormatInt(due.UnixMilli(), 10)), "watchdog", now)
	return ev, true
}

// NoDeadlineOrder is the deadline-order score of an open alert with no
// running timer: after every alert that has one (2^52 ms, far beyond any
// deadline, and exact as a float64 score).
const NoDeadlineOrder int64 = 1 << 52

// DeadlineOrder is st's place in the worklist's order (ListAlerts'
// LIST_ORDER_DEADLINE_ASC), in Unix milliseconds: the next deadline the
// people on the alert must meet, the acknowledge-by clock until it is
// acknowledged, then the action-by clock until it is actioned, else the
// escalation step's due time (a breached clock stays: an overdue alert
// keeps its passed deadline, the smallest, so it sorts first);
// NoDeadlineOrder for an open alert with none. ok is false for a terminal
// alert, which is not in that order. The console's worklist shows the same
// deadline.
func DeadlineOrder(st *State) (ms int64, ok bool) {
	if st == nil || IsTerminal(st) {
		return 0, false
	}
	c := st.GetClocks()
	switch {
	case st.GetAcknowledgedAt() == nil && c.GetAcknowledgeBy() != nil:
		return c.GetAcknowledgeBy().AsTime().UnixMilli(), true
	case st.GetActionedAt() == nil && c.GetActionBy() != nil:
		return c.GetActionBy().AsTime().UnixMilli(), true
	case st.GetStepDueAt() != nil:
		return st.GetStepDueAt().AsTime().UnixMilli(), true
	}
	return NoDeadlineOrder, true
}
