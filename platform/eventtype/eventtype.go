// Package eventtype names the payloads of the event log: one table, kept in
// step with the proto's Event.payload oneof by its test. The name of a
// payload is its message name ("AlertRaised"); it is what the event-type
// Kafka header carries, what a timeline entry and the audit trail record, and
// what logs and spans call the event. The package imports only the generated
// events, so pure domain packages may use it.
package eventtype

import (
	"google.golang.org/protobuf/reflect/protoreflect"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// The payload names, one for each case of Event.payload.
const (
	AlertRaised            = "AlertRaised"
	AlertAmended           = "AlertAmended"
	AlertCancelled         = "AlertCancelled"
	AlertQuarantined       = "AlertQuarantined"
	AlertRouted            = "AlertRouted"
	NotificationSent       = "NotificationSent"
	NotificationFailed     = "NotificationFailed"
	NotificationDelivered  = "NotificationDelivered"
	AlertRead              = "AlertRead"
	AlertAcknowledged      = "AlertAcknowledged"
	AlertDeclined          = "AlertDeclined"
	ActionRecorded         = "ActionRecorded"
	AlertEscalated         = "AlertEscalated"
	SLABreached            = "SLABreached"
	FailsafeQueued         = "FailsafeQueued"
	AlertClosed            = "AlertClosed"
	NotificationSuperseded = "NotificationSuperseded"
	StepRecipientsResolved = "StepRecipientsResolved"
	NotificationDeferred   = "NotificationDeferred"
	DigestSent             = "DigestSent"
	BreachNoticeSent       = "BreachNoticeSent"
	TimerRepaired          = "TimerRepaired"
	BundleProposed         = "BundleProposed"
	BundleReviewed         = "BundleReviewed"
	AuditAnchored          = "AuditAnchored"
	NotificationAttempted  = "NotificationAttempted"
)

// All lists every payload name in the order of the proto's oneof.
var All = []string{
	AlertRaised,
	AlertAmended,
	AlertCancelled,
	AlertQuarantined,
	AlertRouted,
	NotificationSent,
	NotificationFailed,
	NotificationDelivered,
	AlertRead,
	AlertAcknowledged,
	AlertDeclined,
	ActionRecorded,
	AlertEscalated,
	SLABreached,
	FailsafeQueued,
	AlertClosed,
	NotificationSuperseded,
	StepRecipientsResolved,
	NotificationDeferred,
	DigestSent,
	BreachNoticeSent,
	TimerRepaired,
	BundleProposed,
	BundleReviewed,
	AuditAnchored,
	NotificationAttempted,
}

// Of returns the name of the event's payload, e.g. "AlertRaised", or "" when
// the event has no payload.
func Of(ev *eventsv1.Event) string {
	m := ev.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName(protoreflect.Name("payload")))
	if fd == nil {
		return ""
	}
	return string(fd.Message().Name())
}

// Details returns the report an event carries: the details of an
// AlertRaised, AlertAmended or AlertQuarantined, nil for any other event.
func Details(ev *eventsv1.Event) *eventsv1.AlertDetails {
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_AlertRaised:
		return p.AlertRaised.GetDetails()
	case *eventsv1.Event_AlertAmended:
		return p.AlertAmended.GetDetails()
	case *eventsv1.Event_AlertQuarantined:
		return p.AlertQuarantined.GetDetails()
	}
	return nil
}
