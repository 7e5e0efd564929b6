package lifecycle

import (
	"fmt"
	"strings"
	"time"

	"github.com/herald-health/herald/platform/fault"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Decision is the outcome of a command: the event to append, or, when the
// request id was already applied, the id of the event it appended then
// (Replayed: append nothing, answer with the current state).
type Decision struct {
	Event    *eventsv1.Event
	EventID  string
	Replayed bool
}

// Acknowledge is an identified person accepting responsibility.
type Acknowledge struct {
	Actor *eventsv1.Actor
	// RoleFor, when set, names the role the actor holds for the alert's
	// trust (the identity's binding); it replaces Actor.Role.
	RoleFor   func(tenant string) string
	RequestID string
	// Via is how: "link", "app", "grpc", "phone".
	Via string
}

// Decline is a recipient declining the alert.
type Decline struct {
	Actor *eventsv1.Actor
	// RoleFor, when set, names the role the actor holds for the alert's
	// trust (the identity's binding); it replaces Actor.Role.
	RoleFor   func(tenant string) string
	RequestID string
	Reason    eventsv1.DeclineReason
	Note      string
}

// RecordAction records what was done about the finding.
type RecordAction struct {
	Actor *eventsv1.Actor
	// RoleFor, when set, names the role the actor holds for the alert's
	// trust (the identity's binding); it replaces Actor.Role.
	RoleFor   func(tenant string) string
	RequestID string
	Action    string
}

// MarkRead records that a person opened the alert.
type MarkRead struct {
	Actor *eventsv1.Actor
	// RoleFor, when set, names the role the actor holds for the alert's
	// trust (the identity's binding); it replaces Actor.Role.
	RoleFor   func(tenant string) string
	RequestID string
}

// Close is a fail-safe officer closing the alert with a reason.
type Close struct {
	Actor *eventsv1.Actor
	// RoleFor, when set, names the role the actor holds for the alert's
	// trust (the identity's binding); it replaces Actor.Role.
	RoleFor   func(tenant string) string
	RequestID string
	Reason    string
}

// Command kinds, part of a command's event id.
const (
	kindAcknowledge = "acknowledged"
	kindDecline     = "declined"
	kindAction      = "actioned"
	kindRead        = "read"
	kindClose       = "closed"
)

// DecideAcknowledge decides an Acknowledge on st (nil: the alert is not
// known). Errors are fault kinds: Invalid (naming the field), NotFound,
// FailedPrecondition (naming the current state), AlreadyExists (request id
// reused for another command).
func DecideAcknowledge(st *State, alertID string, c Acknowledge, now time.Time) (Decision, error) {
	c.Actor = roleIn(c.Actor, c.RoleFor, st.GetTenant())
	if err := validateActor(alertID, c.Actor, c.RequestID); err != nil {
		return Decision{}, err
	}
	if d, ok, err := replay(st, alertID, kindAcknowledge, c.RequestID); ok || err != nil {
		return d, err
	}
	if err := exists(st, alertID); err != nil {
		return Decision{}, err
	}
	if !awaitingAck(st) {
		return Decision{}, precondition(st, "acknowledge")
	}
	if st.State == Failsafe && st.GetAcknowledgedAt() != nil {
		return Decision{}, fault.Precondition(fmt.Sprintf("alert %s: already acknowledged by %s; it stays in the fail-safe queue until a %s closes it",
			alertID, st.GetAcknowledgedBy().GetPersonId(), RoleFailsafeOfficer))
	}
	if st.State != Failsafe && allMust(st) && contains(st.StepAcknowledgers, c.Actor.GetPersonId()) {
		return Decision{}, fault.Precondition(fmt.Sprintf("alert %s: person already acknowledged step %d", alertID, st.Step))
	}
	via := c.Via
	if via == "" {
		via = "grpc"
	}
	return decided(st, kindAcknowledge, c.RequestID, now, &eventsv1.Event{Payload: &eventsv1.Event_AlertAcknowledged{
		AlertAcknowledged: &eventsv1.AlertAcknowledged{Actor: c.Actor, Step: st.Step, RequestId: c.RequestID, Via: via},
	}}), nil
}

// DecideDecline decides a Decline. An alert in the fail-safe queue cannot be
// declined: the queue is the end of the ladder.
func DecideDecline(st *State, alertID string, c Decline, now time.Time) (Decision, error) {
	c.Actor = roleIn(c.Actor, c.RoleFor, st.GetTenant())
	if err := validateActor(alertID, c.Actor, c.RequestID); err != nil {
		return Decision{}, err
	}
	switch {
	case c.Reason == eventsv1.DeclineReason_DECLINE_REASON_UNSPECIFIED:
		return Decision{}, fault.Invalid("decline alert "+alertID, fault.Violation{Field: "reason", Problem: "is required"})
	case eventsv1.DeclineReason_name[int32(c.Reason)] == "":
		return Decision{}, fault.Invalid("decline alert "+alertID, fault.Violation{Field: "reason", Problem: fmt.Sprintf("unknown value %d", c.Reason)})
	case c.Reason == eventsv1.DeclineReason_DECLINE_REASON_OTHER && strings.TrimSpace(c.Note) == "":
		return Decision{}, fault.Invalid("decline alert "+alertID, fault.Violation{Field: "note", Problem: "is required when reason is OTHER"})
	}
	if d, ok, err := replay(st, alertID, kindDecline, c.RequestID); ok || err != nil {
		return d, err
	}
	if err := exists(st, alertID); err != nil {
		return Decision{}, err
	}
	if !escalating(st) {
		return Decision{}, precondition(st, "decline")
	}
	return decided(st, kindDecline, c.RequestID, now, &eventsv1.Event{Payload: &eventsv1.Event_AlertDeclined{
		AlertDeclined: &eventsv1.AlertDeclined{Actor: c.Actor, Step: st.Step, Reason: c.Reason, Note: c.Note, RequestId: c.RequestID},
	}}), nil
}

// DecideRecordAction decides a RecordAction: only on an acknowledged alert.
func DecideRecordAction(st *State, alertID string, c RecordAction, now time.Time) (Decision, error) {
	c.Actor = roleIn(c.Actor, c.RoleFor, st.GetTenant())
	if err := validateActor(alertID, c.Actor, c.RequestID); err != nil {
		return Decision{}, err
	}
	if strings.TrimSpace(c.Action) == "" {
		return Decision{}, fault.Invalid("record action on alert "+alertID, fault.Violation{Field: "action", Problem: "is required"})
	}
	if d, ok, err := replay(st, alertID, kindAction, c.RequestID); ok || err != nil {
		return d, err
	}
	if err := exists(st, alertID); err != nil {
		return Decision{}, err
	}
	if IsTerminal(st) || !IsAcknowledged(st) {
		return Decision{}, precondition(st, "record an action on")
	}
	return decided(st, kindAction, c.RequestID, now, &eventsv1.Event{Payload: &eventsv1.Event_ActionRecorded{
		ActionRecorded: &eventsv1.ActionRecorded{Actor: c.Actor, Action: c.Action, RequestId: c.RequestID},
	}}), nil
}

// DecideMarkRead decides a MarkRead: any routed alert that is not closed or
// cancelled.
func DecideMarkRead(st *State, alertID string, c MarkRead, now time.Time) (Decision, error) {
	c.Actor = roleIn(c.Actor, c.RoleFor, st.GetTenant())
	if err := validateActor(alertID, c.Actor, c.RequestID); err != nil {
		return Decision{}, err
	}
	if d, ok, err := replay(st, alertID, kindRead, c.RequestID); ok || err != nil {
		return d, err
	}
	if err := exists(st, alertID); err != nil {
		return Decision{}, err
	}
	if IsTerminal(st) {
		return Decision{}, precondition(st, "mark read")
	}
	return decided(st, kindRead, c.RequestID, now, &eventsv1.Event{Payload: &eventsv1.Event_AlertRead{
		AlertRead: &eventsv1.AlertRead{Actor: c.Actor, RequestId: c.RequestID},
	}}), nil
}

// DecideClose decides a Close: a fail-safe officer (actor role
// RoleFailsafeOfficer) with a reason, on an alert not yet closed or
// cancelled. Anyone else gets PermissionDenied.
func DecideClose(st *State, alertID string, c Close, now time.Time) (Decision, error) {
	c.Actor = roleIn(c.Actor, c.RoleFor, st.GetTenant())
	if err := validateActor(alertID, c.Actor, c.RequestID); err != nil {
		return Decision{}, err
	}
	if strings.TrimSpace(c.Reason) == "" {
		return Decision{}, fault.Invalid("close alert "+alertID, fault.Violation{Field: "reason", Problem: "is required"})
	}
	if c.Actor.GetRole() != RoleFailsafeOfficer {
		return Decision{}, fault.PermissionDenied(fmt.Sprintf("close alert %s: only a %s may close an alert", alertID, RoleFailsafeOfficer))
	}
	if d, ok, err := replay(st, alertID, kindClose, c.RequestID); ok || err != nil {
		return d, err
	}
	if err := exists(st, alertID); err != nil {
		return Decision{}, err
	}
	if IsTerminal(st) {
		return Decision{}, precondition(st, "close")
	}
	return decided(st, kindClose, c.RequestID, now, &eventsv1.Event{Payload: &eventsv1.Event_AlertClosed{
		AlertClosed: &eventsv1.AlertClosed{Actor: c.Actor, Reason: c.Reason, RequestId: c.RequestID},
	}}), nil
}

// CommandEventID is the event id of a command: a hash of the alert id, the
// command kind and the client request id, so a retried request appends the
// same event.
func CommandEventID(alertID, kind, requestID string) string {
	return EventID(alertID, kind, requestID)
}

// roleIn returns a with the role roleFor names for tenant (a copy; a
// unchanged when roleFor is nil).
func roleIn(a *eventsv1.Actor, roleFor func(string) string, tenant string) *eventsv1.Actor {
	if roleFor == nil || a == nil {
		return a
	}
	out := proto.Clone(a).(*eventsv1.Actor)
	out.Role = roleFor(tenant)
	return out
}

func validateActor(alertID string, a *eventsv1.Actor, requestID string) error {
	var v []fault.Violation
	if alertID == "" {
		v = append(v, fault.Violation{Field: "alert_id", Problem: "is required"})
	}
	if a.GetPersonId() == "" {
		v = append(v, fault.Violation{Field: "actor.person_id", Problem: "is required"})
	}
	if requestID == "" {
		v = append(v, fault.Violation{Field: "request_id", Problem: "is required"})
	} else if len(requestID) > 128 {
		v = append(v, fault.Violation{Field: "request_id", Problem: "is longer than 128 characters"})
	}
	if len(v) > 0 {
		return fault.Invalid("command on alert "+alertID, v...)
	}
	return nil
}

// replay finds the request id in the timeline. Same command: the original
// outcome. Another command with the same request id: AlreadyExists.
func replay(st *State, alertID, kind, requestID string) (Decision, bool, error) {
	want := CommandEventID(alertID, kind, requestID)
	for _, e := range st.GetTimeline() {
		if e.GetRequestId() != requestID {
			continue
		}
		if e.GetEventId() == want {
			return Decision{EventID: want, Replayed: true}, true, nil
		}
		return Decision{}, false, fault.AlreadyExists(fmt.Sprintf("alert %s: request id %s was used for a %s", alertID, requestID, e.GetType()))
	}
	return Decision{}, false, nil
}

func exists(st *State, alertID string) error {
	if st == nil || st.State == 0 {
		return fault.NotFound("alert " + alertID + " not found")
	}
	return nil
}

func precondition(st *State, verb string) error {
	return fault.Precondition(fmt.Sprintf("cannot %s alert %s: alert is %s", verb, st.GetAlertId(), StatusName(st.GetState())))
}

// StatusName is the short name of a state ("CANCELLED").
func StatusName(s interface{ String() string }) string {
	return strings.TrimPrefix(s.String(), "STATE_")
}

func decided(st *State, kind, requestID string, now time.Time, ev *eventsv1.Event) Decision {
	envelope(st, ev, CommandEventID(st.GetAlertId(), kind, requestID), requestID, now)
	return Decision{Event: ev, EventID: ev.EventId}
}

func envelope(st *State, ev *eventsv1.Event, id, causation string, now time.Time) {
	ev.EventId = id
	ev.AlertId = st.GetAlertId()
	ev.Tenant = st.GetTenant()
	ev.OccurredAt = timestamppb.New(now)
	ev.SchemaVersion = SchemaVersion
	ev.CausationId = causation
	ev.Policy = st.GetPolicy().GetRef()
}
