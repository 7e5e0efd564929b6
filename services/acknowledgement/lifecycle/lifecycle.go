// Package lifecycle is the alert lifecycle of Herald: the pure fold of an
// alert's events into its state, the decisions of the acknowledgement
// commands (Acknowledge, Decline, RecordAction, MarkRead, Close), the
// decisions of fired SLA timers, and the reactions to events (a decline or a
// failed step escalates at once).
//
// Everything here is a pure function of its arguments: no I/O, no clock (the
// caller passes now), no randomness. Event ids are deterministic (a hash of
// the alert id and what caused the event), so deciding twice appends the
// same event twice and the fold applies it once.
//
// The state is the proto message acknowledgementv1.AlertState (also the
// value of the compacted topic herald.alert-state.v1); it holds no patient
// data. The fold never mutates its input: it returns a new state.
//
// Tools in cmd/ and e2e/ may import this package; other services keep their
// own narrow projections.
package lifecycle

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"

	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// State is an alert's lifecycle state.
type State = ackv1.AlertState

// Status values, re-exported for readability.
const (
	Raised       = ackv1.State_STATE_RAISED
	Routed       = ackv1.State_STATE_ROUTED
	Notified     = ackv1.State_STATE_NOTIFIED
	Delivered    = ackv1.State_STATE_DELIVERED
	Read         = ackv1.State_STATE_READ
	Acknowledged = ackv1.State_STATE_ACKNOWLEDGED
	Actioned     = ackv1.State_STATE_ACTIONED
	Declined     = ackv1.State_STATE_DECLINED
	Escalated    = ackv1.State_STATE_ESCALATED
	Failsafe     = ackv1.State_STATE_FAILSAFE
	Closed       = ackv1.State_STATE_CLOSED
	Cancelled    = ackv1.State_STATE_CANCELLED
	Quarantined  = ackv1.State_STATE_QUARANTINED
)

// RoleFailsafeOfficer is the actor role allowed to close an alert.
const RoleFailsafeOfficer = "failsafe-officer"

// SchemaVersion is the payload schema version of the events this package
// decides.
const SchemaVersion = 1

// EventID returns the deterministic id of an event from the parts that
// identify it: the first 32 hex characters of SHA-256 over the parts joined
// by the unit separator (the scheme of platform/eventlog.ID).
func EventID(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x1f")))
	return hex.EncodeToString(sum[:])[:32]
}

// IsTerminal reports whether the alert is closed or cancelled: no obligation
// is left and no timer runs.
func IsTerminal(st *State) bool {
	switch st.GetState() {
	case Closed, Cancelled:
		return true
	}
	return false
}

// IsAcknowledged reports whether someone accepted responsibility.
func IsAcknowledged(st *State) bool {
	switch st.GetState() {
	case Acknowledged, Actioned:
		return true
	}
	return st.GetAcknowledgedAt() != nil
}

// awaitingAck reports whether the alert is routed, open and nobody has
// accepted it yet (it may be in the fail-safe queue).
func awaitingAck(st *State) bool {
	switch st.GetState() {
	case Routed, Notified, Delivered, Read, Declined, Escalated, Failsafe:
		return true
	}
	return false
}

// escalating reports whether the escalation ladder is running: awaiting an
// acknowledgement and not yet in the fail-safe queue.
func escalating(st *State) bool {
	return awaitingAck(st) && st.GetState() != Failsafe
}

// ObligationOpen reports whether the obligation of a clock is still open:
// communicate (until delivered, read or acknowledged), acknowledge (until
// acknowledged), action (until an action is recorded). Nothing is open on a
// closed or cancelled alert.
func ObligationOpen(st *State, k eventsv1.ClockKind) bool {
	if IsTerminal(st) || st.GetState() == ackv1.State_STATE_UNSPECIFIED {
		return false
	}
	switch k {
	case eventsv1.ClockKind_CLOCK_KIND_COMMUNICATE:
		return !st.GetCommunicated() && !IsAcknowledged(st)
	case eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE:
		return !IsAcknowledged(st)
	case eventsv1.ClockKind_CLOCK_KIND_ACTION:
		return st.GetActionedAt() == nil
	}
	return false
}

// Deadline returns the deadline of clock k, or the zero time if the category
// has no such clock.
func Deadline(st *State, k eventsv1.ClockKind) time.Time {
	var ts *timestamppb.Timestamp
	switch k {
	case eventsv1.ClockKind_CLOCK_KIND_COMMUNICATE:
		ts = st.GetClocks().GetCommunicateBy()
	case eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE:
		ts = st.GetClocks().GetAcknowledgeBy()
	case eventsv1.ClockKind_CLOCK_KIND_ACTION:
		ts = st.GetClocks().GetActionBy()
	}
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

// Breached reports whether clock k has already been recorded as breached.
func Breached(st *State, k eventsv1.ClockKind) bool {
	for _, b := range st.GetBreached() {
		if b == k {
			return true
		}
	}
	return false
}

// Overdue reports whether, at now, the current step is past its timeout or
// an open obligation is past its clock.
func Overdue(st *State, now time.Time) bool {
	if IsTerminal(st) {
		return false
	}
	if escalating(st) && st.GetStepDueAt() != nil && !now.Before(st.GetStepDueAt().AsTime()) {
		return true
	}
	for _, k := range clockKinds {
		d := Deadline(st, k)
		if !d.IsZero() && ObligationOpen(st, k) && !now.Before(d) {
			return true
		}
	}
	return false
}

// Assignees returns the people currently holding the alert: whoever
// acknowledged it, else the people notified at the current step.
func Assignees(st *State) []string {
	if p := st.GetAcknowledgedBy().GetPersonId(); p != "" {
		return []string{p}
	}
	return st.GetStepRecipients()
}

// Seen reports whether the event id has already been applied.
func Seen(st *State, eventID string) bool {
	for _, e := range st.GetTimeline() {
		if e.GetEventId() == eventID {
			return true
		}
	}
	return false
}

var clockKinds = []eventsv1.ClockKind{
	eventsv1.ClockKind_CLOCK_KIND_COMMUNICATE,
	eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE,
	eventsv1.ClockKind_CLOCK_KIND_ACTION,
}

func u32(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

func stepTimeout(st *State, step uint32) time.Duration {
	steps := st.GetPolicy().GetSteps()
	if int(step) >= len(steps) {
		return 0
	}
	return steps[step].GetTimeout().AsDuration()
}

// recipientEvents are the timeline entries that name a person the alert
// was routed or escalated to (a message sent, deferred into a digest, or
// that failed: the alert was still theirs).
var recipientEvents = map[string]bool{
	"NotificationSent": true, "NotificationFailed": true, "NotificationDeferred": true, "DigestSent": true,
}

// Recipients returns the people the alert was routed or escalated to, in
// every round and step so far: the people its notifications named and the
// people resolved for the current step (who may answer before their
// message is on the log). Authorization lets them act on the alert
// (platform/authz/access).
func Recipients(st *State) []string {
	var out []string
	add := func(p string) {
		if p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	for _, e := range st.GetTimeline() {
		if recipientEvents[e.GetType()] {
			add(e.GetPersonId())
		}
	}
	for _, p := range st.GetStepResolved() {
		add(p)
	}
	for _, p := range st.GetStepRecipients() {
		add(p)
	}
	return out
}
