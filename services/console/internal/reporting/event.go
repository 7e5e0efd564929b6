package reporting

import (
	"strings"
	"time"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Event is one event of an alert as the read model keeps it: identifiers,
// times, delivery states and fixed-vocabulary reasons. It holds no patient
// data and no free text people typed (decline notes, actions, close
// reasons), only the ids of the people involved.
type Event struct {
	EventID    string
	AlertID    string
	Tenant     string
	Type       string // the payload's message name, e.g. AlertAcknowledged
	OccurredAt time.Time
	// Partition and Offset on the event log: the order of the alert's events.
	Partition int
	Offset    int64

	ActorID   string // who acknowledged, declined, read, actioned or closed
	ActorRole string
	// ActorName and ActorIdentityProvider: the acting member of staff's
	// display name and the identity provider that signed them in, as the
	// command recorded them (the governance timeline's "who").
	ActorName             string
	ActorIdentityProvider string
	// RecipientID, Channel and NotificationID of a message; Delivery its
	// state: sent, failed, delivered, deferred, digest, superseded,
	// breach-notice, resolved.
	RecipientID    string
	Channel        string
	NotificationID string
	Delivery       string
	Step, Repeat   *int
	// Reason in fixed words: the decline reason (NOT_MY_PATIENT...), the
	// escalation reason, why a message was superseded, or whether a failed
	// send was permanent.
	Reason string
	// Clock breached (COMMUNICATE, ACKNOWLEDGE, ACTION) and its deadline.
	Clock    string
	Deadline *time.Time

	// From the raise and the routing.
	Category      string
	LocalCategory string
	PolicyID      string
	PolicyVersion string
	Accession     string
	ReferrerID    string
	TeamID        string
	ClockStart    *time.Time
	CommunicateBy *time.Time
	AcknowledgeBy *time.Time
	ActionBy      *time.Time
}

// FromProto extracts the read model's Event from an event of the log at
// (partition, offset). ok is false for an event without a payload or ids.
func FromProto(ev *eventsv1.Event, typ string, partition int, offset int64) (Event, bool) {
	if ev.GetEventId() == "" || ev.GetAlertId() == "" || typ == "" {
		return Event{}, false
	}
	e := Event{
		EventID: ev.GetEventId(), AlertID: ev.GetAlertId(), Tenant: ev.GetTenant(), Type: typ,
		OccurredAt: ev.GetOccurredAt().AsTime(), Partition: partition, Offset: offset,
		PolicyID: ev.GetPolicy().GetPolicyId(), PolicyVersion: ev.GetPolicy().GetVersion(),
	}
	details := func(d *eventsv1.AlertDetails) {
		e.Accession = d.GetAccession()
		e.ReferrerID = d.GetReferrer().GetId()
		e.TeamID = d.GetReferrer().GetTeam()
	}
	actor := func(a *eventsv1.Actor) {
		e.ActorID, e.ActorRole = a.GetPersonId(), a.GetRole()
		e.ActorName, e.ActorIdentityProvider = a.GetDisplayName(), a.GetIdentityProvider()
	}
	recipient := func(r *eventsv1.Recipient, ch eventsv1.Channel) {
		e.RecipientID = r.GetPersonId()
		if ch != eventsv1.Channel_CHANNEL_UNSPECIFIED {
			e.Channel = short(ch.String(), "CHANNEL_")
		}
	}
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_AlertRaised:
		details(p.AlertRaised.GetDetails())
	case *eventsv1.Event_AlertAmended:
		details(p.AlertAmended.GetDetails())
	case *eventsv1.Event_AlertQuarantined:
		details(p.AlertQuarantined.GetDetails())
	case *eventsv1.Event_AlertRouted:
		r := p.AlertRouted
		e.Category = short(r.GetCategory().String(), "CATEGORY_")
		e.LocalCategory = r.GetLocalCategory()
		if ref := r.GetPolicy().GetRef(); ref != nil {
			e.PolicyID, e.PolicyVersion = ref.GetPolicyId(), ref.GetVersion()
		}
		c := r.GetClocks()
		e.ClockStart, e.CommunicateBy = ts(c.GetStartedAt()), ts(c.GetCommunicateBy())
		e.AcknowledgeBy, e.ActionBy = ts(c.GetAcknowledgeBy()), ts(c.GetActionBy())
	case *eventsv1.Event_NotificationSent:
		n := p.NotificationSent
		recipient(n.GetRecipient(), n.GetChannel())
		e.NotificationID, e.Delivery, e.Step, e.Repeat = n.GetNotificationId(), "sent", u(n.GetStep()), u(n.GetRepeat())
	case *eventsv1.Event_NotificationFailed:
		n := p.NotificationFailed
		recipient(n.GetRecipient(), n.GetChannel())
		e.NotificationID, e.Delivery, e.Step, e.Repeat = n.GetNotificationId(), "failed", u(n.GetStep()), u(n.GetRepeat())
		// The provider's text may name a contact point: only its kind is kept.
		e.Reason = "transient"
		if n.GetPermanent() {
			e.Reason = "permanent"
		}
	case *eventsv1.Event_NotificationDelivered:
		n := p.NotificationDelivered
		recipient(nil, n.GetChannel())
		e.NotificationID, e.Delivery = n.GetNotificationId(), "delivered"
	case *eventsv1.Event_NotificationDeferred:
		n := p.NotificationDeferred
		recipient(n.GetRecipient(), n.GetChannel())
		e.NotificationID, e.Delivery, e.Step, e.Repeat = n.GetNotificationId(), "deferred", u(n.GetStep()), u(n.GetRepeat())
	case *eventsv1.Event_DigestSent:
		n := p.DigestSent
		recipient(n.GetRecipient(), n.GetChannel())
		e.NotificationID, e.Delivery, e.Step, e.Repeat = n.GetNotificationId(), "digest", u(n.GetStep()), u(n.GetRepeat())
	case *eventsv1.Event_NotificationSuperseded:
		n := p.NotificationSuperseded
		recipient(n.GetRecipient(), eventsv1.Channel_CHANNEL_UNSPECIFIED)
		e.NotificationID, e.Delivery, e.Step, e.Repeat = n.GetNotificationId(), "superseded", u(n.GetStep()), u(n.GetRepeat())
		e.Reason = short(n.GetReasonCode().String(), "SUPERSEDED_REASON_")
	case *eventsv1.Event_BreachNoticeSent:
		n := p.BreachNoticeSent
		recipient(n.GetRecipient(), n.GetChannel())
		e.NotificationID, e.Delivery = n.GetNotificationId(), "breach-notice"
		e.Clock = short(n.GetClock().String(), "CLOCK_KIND_")
	case *eventsv1.Event_StepRecipientsResolved:
		e.Delivery, e.Step, e.Repeat = "resolved", u(p.StepRecipientsResolved.GetStep()), u(p.StepRecipientsResolved.GetRepeat())
	case *eventsv1.Event_AlertRead:
		actor(p.AlertRead.GetActor())
	case *eventsv1.Event_AlertAcknowledged:
		actor(p.AlertAcknowledged.GetActor())
		e.Step = u(p.AlertAcknowledged.GetStep())
	case *eventsv1.Event_AlertDeclined:
		actor(p.AlertDeclined.GetActor())
		e.Step = u(p.AlertDeclined.GetStep())
		e.Reason = short(p.AlertDeclined.GetReason().String(), "DECLINE_REASON_")
	case *eventsv1.Event_ActionRecorded:
		actor(p.ActionRecorded.GetActor())
	case *eventsv1.Event_AlertEscalated:
		x := p.AlertEscalated
		e.Step, e.Repeat = u(x.GetToStep()), u(x.GetRepeat())
		e.Reason = short(x.GetReason().String(), "ESCALATION_REASON_")
	case *eventsv1.Event_SlaBreached:
		x := p.SlaBreached
		e.Clock, e.Deadline, e.Step = short(x.GetClock().String(), "CLOCK_KIND_"), ts(x.GetDeadline()), u(x.GetStep())
	case *eventsv1.Event_FailsafeQueued:
		e.Step = u(p.FailsafeQueued.GetLastStep())
	case *eventsv1.Event_AlertClosed:
		actor(p.AlertClosed.GetActor())
	case *eventsv1.Event_TimerRepaired:
		e.Deadline, e.Step, e.Repeat = ts(p.TimerRepaired.GetDeadline()), u(p.TimerRepaired.GetStep()), u(p.TimerRepaired.GetRepeat())
	}
	return e, true
}

func short(name, prefix string) string { return strings.TrimPrefix(name, prefix) }

func u(v uint32) *int {
	i := int(v)
	return &i
}

func ts(t *timestamppb.Timestamp) *time.Time {
	if t == nil {
		return nil
	}
	v := t.AsTime()
	return &v
}
