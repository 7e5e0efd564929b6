package lifecycle

import (
	"fmt"
	"strings"
	"time"

	"github.com/herald-health/herald/platform/eventtype"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Position is where an event sits in the log. A negative Offset means
// unknown (e.g. an event folded before it was appended).
type Position struct {
	Partition int32
	Offset    int64
}

// Apply folds one event into the state of its alert and returns the new
// state and whether the event was applied. st may be nil (the alert is new);
// st is never modified.
//
// An event is skipped (applied=false, st returned as is) when its id is
// already in the timeline (a duplicate append) or when pos is at or before
// the offset the state already reflects on the same partition (a replay).
//
// An applied event is always recorded in the timeline. When it cannot change
// the state any more (an acknowledgement after a cancellation, an escalation
// after an acknowledgement: the first in the log wins) it is recorded with
// no_effect set.
func Apply(st *State, ev *eventsv1.Event, pos Position) (*State, bool) {
	if st != nil {
		if Seen(st, ev.GetEventId()) {
			return st, false
		}
		if pos.Offset >= 0 && hasPosition(st) && pos.Partition == st.GetPartition() && pos.Offset <= st.GetOffset() {
			return st, false
		}
	}
	var next *State
	if st == nil {
		next = &State{AlertId: ev.GetAlertId(), Tenant: ev.GetTenant()}
	} else {
		next = proto.Clone(st).(*State)
	}
	if next.GetTenant() == "" {
		next.Tenant = ev.GetTenant()
	}
	at := ev.GetOccurredAt()
	entry := &ackv1.TimelineEntry{
		EventId:   ev.GetEventId(),
		Type:      eventtype.Of(ev),
		At:        at,
		Partition: pos.Partition,
		Offset:    pos.Offset,
	}
	effect := apply(next, ev, entry)
	entry.NoEffect = !effect
	next.Timeline = append(next.Timeline, entry)
	next.EventCount++
	next.LastEventId = ev.GetEventId()
	if pos.Offset >= 0 {
		next.Partition = pos.Partition
		next.Offset = pos.Offset
	}
	if at != nil && (next.UpdatedAt == nil || at.AsTime().After(next.UpdatedAt.AsTime())) {
		next.UpdatedAt = at
	}
	return next, true
}

// apply mutates st for ev, fills the timeline entry's summary and actor, and
// reports whether the event had an effect.
func apply(st *State, ev *eventsv1.Event, e *ackv1.TimelineEntry) bool {
	at := ev.GetOccurredAt()
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_AlertRaised:
		e.Summary = "alert raised"
		if IsTerminal(st) {
			// A new flagged report of a finding whose alert was cancelled
			// or closed is a new obligation: the alert re-opens and the
			// routing that follows runs its own ladder.
			e.Summary = "alert raised again after it was " + strings.ToLower(StatusName(st.State)) + ": a new obligation"
			reopen(st, at)
			return true
		}
		if st.State != ackv1.State_STATE_UNSPECIFIED {
			return false
		}
		st.State = Raised
		st.RaisedAt = at
		return true

	case *eventsv1.Event_AlertQuarantined:
		e.Summary = fmt.Sprintf("alert quarantined (%d problems)", len(p.AlertQuarantined.GetProblems()))
		if IsTerminal(st) {
			e.Summary += " after it was " + strings.ToLower(StatusName(st.State)) + ": a new obligation"
			reopen(st, at)
		}
		if st.State != ackv1.State_STATE_UNSPECIFIED && st.State != Raised {
			return false
		}
		st.State = Quarantined
		if st.RaisedAt == nil {
			st.RaisedAt = at
		}
		return true

	case *eventsv1.Event_AlertAmended:
		e.Summary = "report amended"
		if IsTerminal(st) {
			return false
		}
		if st.State == ackv1.State_STATE_UNSPECIFIED {
			st.State = Raised
			st.RaisedAt = at
		}
		return true

	case *eventsv1.Event_AlertCancelled:
		e.Summary = "report cancelled"
		if IsTerminal(st) {
			return false
		}
		st.State = Cancelled
		st.ClosedAt = at
		return true

	case *eventsv1.Event_AlertRouted:
		r := p.AlertRouted
		e.Summary = fmt.Sprintf("routed as %s, policy %s version %s, %d steps",
			r.GetCategory(), r.GetPolicy().GetRef().GetPolicyId(), r.GetPolicy().GetRef().GetVersion(), len(r.GetPolicy().GetSteps()))
		if IsTerminal(st) {
			return false
		}
		if st.RaisedAt == nil {
			st.RaisedAt = at
		}
		st.Category = r.GetCategory()
		st.LocalCategory = r.GetLocalCategory()
		st.Clocks = r.GetClocks()
		st.Policy = r.GetPolicy()
		st.FailsafeQueue = r.GetPolicy().GetFailsafeQueue()
		st.Round++
		if IsAcknowledged(st) {
			// A re-route of an accepted alert updates its category and
			// clocks; nobody is escalated to.
			return true
		}
		st.State = Routed
		st.Step, st.Repeat = 0, 0
		resetStep(st)
		st.StepDueAt = dueAt(st, at, 0)
		return true

	case *eventsv1.Event_StepRecipientsResolved:
		r := p.StepRecipientsResolved
		e.Summary = fmt.Sprintf("step %d repeat %d resolved to %d recipients", r.GetStep(), r.GetRepeat(), len(r.GetPersonIds()))
		if !escalating(st) || r.GetStep() != st.Step || r.GetRepeat() != st.Repeat {
			return false
		}
		for _, person := range r.GetPersonIds() {
			st.StepResolved = addUnique(st.StepResolved, person)
		}
		st.StepResolvedKnown = true
		if allMust(st) && len(st.StepAcknowledgers) > 0 && coversAll(st.StepAcknowledgers, st.StepResolved) {
			// Everyone resolved had acknowledged before the resolution
			// was applied: the step is complete.
			last := st.StepAcknowledgers[len(st.StepAcknowledgers)-1]
			st.State = Acknowledged
			st.AcknowledgedBy = &eventsv1.Actor{PersonId: last}
			st.AcknowledgedAt = at
			st.Communicated = true
			e.Summary += " (every one of them had acknowledged)"
		}
		return true

	case *eventsv1.Event_NotificationSent:
		n := p.NotificationSent
		e.Summary = fmt.Sprintf("sent step %d repeat %d via %s", n.GetStep(), n.GetRepeat(), n.GetChannel())
		stepOf(e, n.GetStep(), n.GetRepeat())
		e.PersonId = n.GetRecipient().GetPersonId()
		if !awaitingAck(st) || n.GetStep() != st.Step || n.GetRepeat() != st.Repeat {
			return true
		}
		st.StepRecipients = addUnique(st.StepRecipients, n.GetRecipient().GetPersonId())
		switch st.State {
		case Routed, Escalated, Declined:
			st.State = Notified
		}
		return true

	case *eventsv1.Event_NotificationFailed:
		n := p.NotificationFailed
		e.Summary = fmt.Sprintf("send failed at step %d repeat %d via %s (step failed: %t)", n.GetStep(), n.GetRepeat(), n.GetChannel(), n.GetStepFailed())
		stepOf(e, n.GetStep(), n.GetRepeat())
		e.PersonId = n.GetRecipient().GetPersonId()
		return true

	case *eventsv1.Event_NotificationSuperseded:
		n := p.NotificationSuperseded
		e.Summary = fmt.Sprintf("not sent at step %d repeat %d: %s", n.GetStep(), n.GetRepeat(), n.GetReason())
		stepOf(e, n.GetStep(), n.GetRepeat())
		e.PersonId = n.GetRecipient().GetPersonId()
		return true

	case *eventsv1.Event_NotificationDeferred:
		// Timeline only: why a message was held back (a rate limit) and
		// when its digest goes out; the NotificationSent that follows
		// counts.
		n := p.NotificationDeferred
		e.Summary = fmt.Sprintf("deferred at step %d repeat %d via %s: %s; digest due %s", n.GetStep(), n.GetRepeat(), n.GetChannel(),
			n.GetReason(), n.GetDigestAt().AsTime().UTC().Format("15:04:05"))
		stepOf(e, n.GetStep(), n.GetRepeat())
		e.PersonId = n.GetRecipient().GetPersonId()
		return true

	case *eventsv1.Event_DigestSent:
		n := p.DigestSent
		e.Summary = fmt.Sprintf("sent step %d repeat %d via %s in a digest of %d alerts", n.GetStep(), n.GetRepeat(), n.GetChannel(), n.GetReferences())
		stepOf(e, n.GetStep(), n.GetRepeat())
		e.PersonId = n.GetRecipient().GetPersonId()
		return true

	case *eventsv1.Event_BreachNoticeSent:
		n := p.BreachNoticeSent
		e.Summary = fmt.Sprintf("told of the %s breach via %s", n.GetClock(), n.GetChannel())
		e.PersonId = n.GetRecipient().GetPersonId()
		return true

	case *eventsv1.Event_NotificationDelivered:
		e.Summary = fmt.Sprintf("delivered via %s", p.NotificationDelivered.GetChannel())
		if IsTerminal(st) {
			return true
		}
		st.Communicated = true
		if st.State == Notified {
			st.State = Delivered
		}
		return true

	case *eventsv1.Event_AlertRead:
		e.Summary = "read"
		e.PersonId = p.AlertRead.GetActor().GetPersonId()
		e.RequestId = p.AlertRead.GetRequestId()
		if IsTerminal(st) {
			return false
		}
		st.Communicated = true
		switch st.State {
		case Routed, Notified, Delivered, Escalated, Declined:
			st.State = Read
		}
		return true

	case *eventsv1.Event_AlertAcknowledged:
		a := p.AlertAcknowledged
		e.Summary = fmt.Sprintf("acknowledged at step %d via %s", a.GetStep(), a.GetVia())
		e.PersonId = a.GetActor().GetPersonId()
		e.RequestId = a.GetRequestId()
		if !awaitingAck(st) {
			return false
		}
		person := a.GetActor().GetPersonId()
		if st.State == Failsafe {
			// Only a fail-safe officer's Close takes an alert out of the
			// fail-safe queue: the acknowledgement is recorded (the
			// person accepted responsibility, the acknowledge clock
			// stops) and the alert stays queued until it is closed.
			if st.GetAcknowledgedAt() != nil {
				return false
			}
			st.AcknowledgedBy = a.GetActor()
			st.AcknowledgedAt = at
			st.Communicated = true
			e.Summary += " (stays in the fail-safe queue until a fail-safe officer closes it)"
			return true
		}
		if allMust(st) && a.GetStep() == st.Step {
			if contains(st.StepAcknowledgers, person) {
				return false
			}
			st.StepAcknowledgers = append(st.StepAcknowledgers, person)
			// Every person the step resolved to must acknowledge, whether
			// or not their send was recorded yet; until the notification
			// service says who they are, no acknowledgement completes it.
			if !st.GetStepResolvedKnown() || !coversAll(st.StepAcknowledgers, st.StepResolved) {
				e.Summary += " (more acknowledgements needed at this step)"
				return true
			}
		}
		st.State = Acknowledged
		st.AcknowledgedBy = a.GetActor()
		st.AcknowledgedAt = at
		st.Communicated = true
		return true

	case *eventsv1.Event_AlertDeclined:
		d := p.AlertDeclined
		e.Summary = fmt.Sprintf("declined at step %d: %s", d.GetStep(), d.GetReason())
		e.PersonId = d.GetActor().GetPersonId()
		e.RequestId = d.GetRequestId()
		if !escalating(st) || d.GetStep() != st.Step {
			return false
		}
		st.State = Declined
		return true

	case *eventsv1.Event_ActionRecorded:
		e.Summary = "action recorded"
		e.PersonId = p.ActionRecorded.GetActor().GetPersonId()
		e.RequestId = p.ActionRecorded.GetRequestId()
		if IsTerminal(st) || !IsAcknowledged(st) {
			return false
		}
		if st.State == Failsafe {
			// Recorded; the alert stays queued until it is closed.
			if st.ActionedAt == nil {
				st.ActionedAt = at
			}
			e.Summary += " (stays in the fail-safe queue until a fail-safe officer closes it)"
			return true
		}
		st.State = Actioned
		if st.ActionedAt == nil {
			st.ActionedAt = at
		}
		return true

	case *eventsv1.Event_AlertEscalated:
		x := p.AlertEscalated
		e.Summary = fmt.Sprintf("escalated from step %d to step %d repeat %d: %s", x.GetFromStep(), x.GetToStep(), x.GetRepeat(), x.GetReason())
		if !escalating(st) || x.GetFromStep() != st.Step || int(x.GetToStep()) >= len(st.GetPolicy().GetSteps()) {
			return false
		}
		if !ahead(x.GetToStep(), x.GetRepeat(), st.Step, st.Repeat) {
			return false
		}
		st.State = Escalated
		st.Step, st.Repeat = x.GetToStep(), x.GetRepeat()
		resetStep(st)
		st.StepDueAt = dueAt(st, at, st.Step)
		return true

	case *eventsv1.Event_SlaBreached:
		b := p.SlaBreached
		e.Summary = fmt.Sprintf("%s clock breached at step %d", b.GetClock(), b.GetStep())
		if !ObligationOpen(st, b.GetClock()) || Breached(st, b.GetClock()) {
			return false
		}
		if d := Deadline(st, b.GetClock()); d.IsZero() || !d.Equal(b.GetDeadline().AsTime()) {
			return false
		}
		st.Breached = append(st.Breached, b.GetClock())
		return true

	case *eventsv1.Event_FailsafeQueued:
		f := p.FailsafeQueued
		e.Summary = fmt.Sprintf("queued for fail-safe after step %d: %s", f.GetLastStep(), f.GetReason())
		if !escalating(st) {
			return false
		}
		st.State = Failsafe
		if f.GetQueue() != "" {
			st.FailsafeQueue = f.GetQueue()
		}
		st.StepDueAt = nil
		return true

	case *eventsv1.Event_AlertClosed:
		e.Summary = "closed by fail-safe officer"
		e.PersonId = p.AlertClosed.GetActor().GetPersonId()
		e.RequestId = p.AlertClosed.GetRequestId()
		if IsTerminal(st) {
			return false
		}
		st.State = Closed
		st.ClosedAt = at
		st.StepDueAt = nil
		return true

	case *eventsv1.Event_TimerRepaired:
		// A fact for the timeline: the state is unchanged (the decision
		// the deadline owes follows as its own event).
		r := p.TimerRepaired
		e.Summary = fmt.Sprintf("lost SLA timer re-armed by the overdue watchdog, %s past the deadline (step %d)",
			r.GetOverdueBy().AsDuration().Round(time.Second), r.GetStep())
		return !IsTerminal(st)
	}
	e.Summary = "unknown event"
	return false
}

// resetStep forgets who was told, resolved and acknowledged at the step
// the alert leaves.
func resetStep(st *State) {
	st.StepRecipients, st.StepAcknowledgers = nil, nil
	st.StepResolved, st.StepResolvedKnown = nil, false
}

// reopen starts a new obligation on a cancelled or closed alert: it is
// raised again, with nothing acknowledged, actioned, breached or
// communicated and no clocks until its new routing. The timeline keeps the
// earlier obligation for audit.
func reopen(st *State, at *timestamppb.Timestamp) {
	st.Reopened++
	st.State = Raised
	st.RaisedAt = at
	st.ClosedAt = nil
	st.AcknowledgedBy, st.AcknowledgedAt, st.ActionedAt = nil, nil, nil
	st.Communicated = false
	st.Breached = nil
	st.Clocks = nil
	st.Step, st.Repeat = 0, 0
	st.StepDueAt = nil
	resetStep(st)
}

func dueAt(st *State, from *timestamppb.Timestamp, step uint32) *timestamppb.Timestamp {
	if from == nil || int(step) >= len(st.GetPolicy().GetSteps()) {
		return nil
	}
	return timestamppb.New(from.AsTime().Add(stepTimeout(st, step)))
}

// ahead reports whether (step, repeat) comes after (curStep, curRepeat).
func ahead(step, repeat, curStep, curRepeat uint32) bool {
	if step != curStep {
		return step > curStep
	}
	return repeat > curRepeat
}

func allMust(st *State) bool {
	steps := st.GetPolicy().GetSteps()
	if int(st.Step) >= len(steps) {
		return false
	}
	return steps[st.Step].GetAckMode() == eventsv1.AckMode_ACK_MODE_ALL_MUST
}

func coversAll(have, want []string) bool {
	for _, w := range want {
		if !contains(have, w) {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func addUnique(list []string, s string) []string {
	if s == "" || contains(list, s) {
		return list
	}
	return append(list, s)
}

// Fold folds events, in log order, into the state of their alert (nil when
// there are none). Duplicates by event id are skipped. Tools use it to
// rebuild an alert's state from its events.
func Fold(events ...*eventsv1.Event) *State {
	var st *State
	for _, e := range events {
		st, _ = Apply(st, e, Position{Offset: -1})
	}
	return st
}

// hasPosition reports whether the state reflects at least one event read
// from the log (with a known offset).
func hasPosition(st *State) bool {
	for i := len(st.GetTimeline()) - 1; i >= 0; i-- {
		if st.GetTimeline()[i].GetOffset() >= 0 {
			return true
		}
	}
	return false
}

// stepOf marks e as a notification of step and repeat (the fields readers
// count reminders and attempts by, instead of the summary's words).
func stepOf(e *ackv1.TimelineEntry, step, repeat uint32) {
	e.Notification, e.Step, e.Repeat = true, step, repeat
}
