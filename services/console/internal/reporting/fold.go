package reporting

import (
	"github.com/herald-health/herald/platform/eventtype"

	"slices"
	"time"
)

// Summary is one alert's row in the read model: the fold of its events.
type Summary struct {
	Tenant        string
	AlertID       string
	Reference     string
	Accession     string
	Category      string // CRITICAL, URGENT, SIGNIFICANT_UNEXPECTED, CANCER, LOCAL; "" before routing
	LocalCategory string
	// State is the reporting's coarse state (see Fold).
	State string

	RaisedAt         time.Time
	RoutedAt         *time.Time
	AcknowledgedAt   *time.Time
	ActionedAt       *time.Time
	FailsafeQueuedAt *time.Time
	ClosedAt         *time.Time
	CancelledAt      *time.Time
	// The category's clocks from the latest routing.
	ClockStart    *time.Time
	CommunicateBy *time.Time
	AcknowledgeBy *time.Time
	ActionBy      *time.Time

	AcknowledgedBy                                           string
	DeclinedReasons                                          []string // one per decline, in order
	BreachedCommunicate, BreachedAcknowledge, BreachedAction bool
	Quarantined                                              bool
	PolicyID, PolicyVersion                                  string
	TeamID, ReferrerID                                       string

	Events      int
	LastEventAt time.Time
}

// States of Summary.State, most decisive first: the state is the first of
// these the alert's events establish.
const (
	StateCancelled    = "cancelled"
	StateClosed       = "closed"
	StateActioned     = "actioned"
	StateAcknowledged = "acknowledged"
	StateFailsafe     = "failsafe"
	StateEscalated    = "escalated"
	StateDeclined     = "declined"
	StateRouted       = "routed"
	StateQuarantined  = "quarantined"
	StateRaised       = "raised"
)

// Fold returns the summary of one alert from its events in log order. It is
// a pure function of the events: the projector recomputes a summary from
// every stored event of the alert, so a redelivered event (stored once) and
// a replay give the same row. ref gives the alert's reference (nil: none).
//
// First times win (raised, routed, acknowledged, actioned, fail-safe queued,
// closed, cancelled: the first such event); the category, clocks and policy
// are the latest routing's (an amendment may re-route); accession, referrer
// and team are the latest raise's or amendment's.
func Fold(events []Event, ref func(alertID string) string) Summary {
	var s Summary
	if len(events) == 0 {
		return s
	}
	first := func(p **time.Time, t time.Time) {
		if *p == nil {
			v := t
			*p = &v
		}
	}
	escalated := false
	for i, e := range events {
		if i == 0 {
			s.AlertID, s.Tenant, s.RaisedAt = e.AlertID, e.Tenant, e.OccurredAt
		}
		s.Events++
		if e.OccurredAt.After(s.LastEventAt) {
			s.LastEventAt = e.OccurredAt
		}
		switch e.Type {
		case eventtype.AlertRaised, eventtype.AlertAmended, eventtype.AlertQuarantined:
			if e.Type != eventtype.AlertAmended && i > 0 && !hasRaise(events[:i]) {
				s.RaisedAt = e.OccurredAt
			}
			s.Accession, s.ReferrerID, s.TeamID = e.Accession, e.ReferrerID, e.TeamID
			if e.Type == eventtype.AlertQuarantined {
				s.Quarantined = true
			}
		case eventtype.AlertRouted:
			first(&s.RoutedAt, e.OccurredAt)
			s.Category, s.LocalCategory = e.Category, e.LocalCategory
			s.ClockStart, s.CommunicateBy, s.AcknowledgeBy, s.ActionBy = e.ClockStart, e.CommunicateBy, e.AcknowledgeBy, e.ActionBy
			s.PolicyID, s.PolicyVersion = e.PolicyID, e.PolicyVersion
		case eventtype.AlertAcknowledged:
			if s.AcknowledgedAt == nil {
				s.AcknowledgedBy = e.ActorID
			}
			first(&s.AcknowledgedAt, e.OccurredAt)
		case eventtype.AlertDeclined:
			s.DeclinedReasons = append(s.DeclinedReasons, e.Reason)
		case eventtype.ActionRecorded:
			first(&s.ActionedAt, e.OccurredAt)
		case eventtype.AlertEscalated:
			escalated = true
		case eventtype.SLABreached:
			switch e.Clock {
			case "COMMUNICATE":
				s.BreachedCommunicate = true
			case "ACKNOWLEDGE":
				s.BreachedAcknowledge = true
			case "ACTION":
				s.BreachedAction = true
			}
		case eventtype.FailsafeQueued:
			first(&s.FailsafeQueuedAt, e.OccurredAt)
		case eventtype.AlertClosed:
			first(&s.ClosedAt, e.OccurredAt)
		case eventtype.AlertCancelled:
			first(&s.CancelledAt, e.OccurredAt)
		}
	}
	if ref != nil {
		s.Reference = ref(s.AlertID)
	}
	switch {
	case s.CancelledAt != nil:
		s.State = StateCancelled
	case s.ClosedAt != nil:
		s.State = StateClosed
	case s.ActionedAt != nil && s.AcknowledgedAt != nil:
		s.State = StateActioned
	case s.AcknowledgedAt != nil:
		s.State = StateAcknowledged
	case s.FailsafeQueuedAt != nil:
		s.State = StateFailsafe
	case escalated:
		s.State = StateEscalated
	case len(s.DeclinedReasons) > 0:
		s.State = StateDeclined
	case s.RoutedAt != nil:
		s.State = StateRouted
	case s.Quarantined:
		s.State = StateQuarantined
	default:
		s.State = StateRaised
	}
	return s
}

// hasRaise reports whether events hold a raise or a quarantine: the raise
// time is that event's, not an earlier stray event's.
func hasRaise(events []Event) bool {
	return slices.ContainsFunc(events, func(e Event) bool { return e.Type == eventtype.AlertRaised || e.Type == eventtype.AlertQuarantined })
}
