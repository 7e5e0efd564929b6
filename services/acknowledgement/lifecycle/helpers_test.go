package lifecycle_test

import (
	"time"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const alertID = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"

var t0 = time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)

func at(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(t0.Add(d)) }

func ev(id string, d time.Duration, p any) *eventsv1.Event {
	e := &eventsv1.Event{EventId: id, AlertId: alertID, Tenant: "RZZ", OccurredAt: at(d)}
	switch v := p.(type) {
	case *eventsv1.AlertRaised:
		e.Payload = &eventsv1.Event_AlertRaised{AlertRaised: v}
	case *eventsv1.AlertQuarantined:
		e.Payload = &eventsv1.Event_AlertQuarantined{AlertQuarantined: v}
	case *eventsv1.AlertAmended:
		e.Payload = &eventsv1.Event_AlertAmended{AlertAmended: v}
	case *eventsv1.AlertCancelled:
		e.Payload = &eventsv1.Event_AlertCancelled{AlertCancelled: v}
	case *eventsv1.AlertRouted:
		e.Payload = &eventsv1.Event_AlertRouted{AlertRouted: v}
	case *eventsv1.NotificationSent:
		e.Payload = &eventsv1.Event_NotificationSent{NotificationSent: v}
	case *eventsv1.NotificationFailed:
		e.Payload = &eventsv1.Event_NotificationFailed{NotificationFailed: v}
	case *eventsv1.NotificationDelivered:
		e.Payload = &eventsv1.Event_NotificationDelivered{NotificationDelivered: v}
	case *eventsv1.AlertRead:
		e.Payload = &eventsv1.Event_AlertRead{AlertRead: v}
	case *eventsv1.AlertAcknowledged:
		e.Payload = &eventsv1.Event_AlertAcknowledged{AlertAcknowledged: v}
	case *eventsv1.AlertDeclined:
		e.Payload = &eventsv1.Event_AlertDeclined{AlertDeclined: v}
	case *eventsv1.ActionRecorded:
		e.Payload = &eventsv1.Event_ActionRecorded{ActionRecorded: v}
	case *eventsv1.AlertEscalated:
		e.Payload = &eventsv1.Event_AlertEscalated{AlertEscalated: v}
	case *eventsv1.SLABreached:
		e.Payload = &eventsv1.Event_SlaBreached{SlaBreached: v}
	case *eventsv1.FailsafeQueued:
		e.Payload = &eventsv1.Event_FailsafeQueued{FailsafeQueued: v}
	case *eventsv1.AlertClosed:
		e.Payload = &eventsv1.Event_AlertClosed{AlertClosed: v}
	case *eventsv1.StepRecipientsResolved:
		e.Payload = &eventsv1.Event_StepRecipientsResolved{StepRecipientsResolved: v}
	case *eventsv1.TimerRepaired:
		e.Payload = &eventsv1.Event_TimerRepaired{TimerRepaired: v}
	default:
		panic("unknown payload")
	}
	return e
}

func policy(steps ...*eventsv1.EscalationStep) *eventsv1.EscalationPolicy {
	for i, s := range steps {
		s.Index = uint32(i)
	}
	return &eventsv1.EscalationPolicy{
		Ref:           &eventsv1.PolicyRef{PolicyId: "rzz-critical", Version: "3", ContentHash: "abc"},
		Steps:         steps,
		FailsafeQueue: "rzz-failsafe",
	}
}

func step(timeout time.Duration, repeats uint32) *eventsv1.EscalationStep {
	return &eventsv1.EscalationStep{Timeout: durationpb.New(timeout), Repeats: repeats, AckMode: eventsv1.AckMode_ACK_MODE_ANY_ONE}
}

// Standard ladder: step 0 (15 min, 1 repeat), step 1 (30 min), step 2 (1 h).
func ladder() *eventsv1.EscalationPolicy {
	return policy(step(15*time.Minute, 1), step(30*time.Minute, 0), step(time.Hour, 0))
}

func raised() *eventsv1.Event { return ev("raised", 0, &eventsv1.AlertRaised{}) }

func routed() *eventsv1.Event {
	return ev("routed", time.Second, &eventsv1.AlertRouted{
		Category: eventsv1.Category_CATEGORY_CRITICAL,
		Clocks: &eventsv1.Clocks{
			CommunicateBy: at(time.Hour),
			AcknowledgeBy: at(2 * time.Hour),
			ActionBy:      at(24 * time.Hour),
		},
		Policy: ladder(),
	})
}

func person(id string) *eventsv1.Actor { return &eventsv1.Actor{PersonId: id, Role: "consultant"} }

func officer(id string) *eventsv1.Actor {
	return &eventsv1.Actor{PersonId: id, Role: lifecycle.RoleFailsafeOfficer}
}

func sent(id string, stepN, repeat uint32, who string) *eventsv1.Event {
	return ev(id, 2*time.Second, &eventsv1.NotificationSent{Step: stepN, Repeat: repeat, Recipient: &eventsv1.Recipient{PersonId: who}, Channel: eventsv1.Channel_CHANNEL_EMAIL})
}

func ack(id, who string, stepN uint32) *eventsv1.Event {
	// Event id as the command decides it, so a replay of "req-<id>" is recognised.
	return ev(lifecycle.CommandEventID(alertID, "acknowledged", "req-"+id), 5*time.Minute, &eventsv1.AlertAcknowledged{Actor: person(who), Step: stepN, RequestId: "req-" + id, Via: "link"})
}

func escalated(id string, d time.Duration, from, to, repeat uint32, r eventsv1.EscalationReason) *eventsv1.Event {
	return ev(id, d, &eventsv1.AlertEscalated{FromStep: from, ToStep: to, Repeat: repeat, Reason: r})
}

// fold applies events with increasing offsets on partition 0.
func fold(events ...*eventsv1.Event) *lifecycle.State {
	var st *lifecycle.State
	for i, e := range events {
		st, _ = lifecycle.Apply(st, e, lifecycle.Position{Partition: 0, Offset: int64(i)})
	}
	return st
}
