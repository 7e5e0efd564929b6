// Package audit is Herald's tamper-evident audit trail: what is recorded,
// how a record is hashed and chained, and how a chain is verified. It is
// pure (no Kafka, no clock); the auditor that keeps the chain on Kafka is in
// internal/auditor, and heraldctl's `audit verify` and `audit export` use
// this package to check what they read.
//
// The trail: every command a person gave on an alert (acknowledge, decline,
// action, close, read, a resend, a policy bundle proposed or approved: every
// event whose payload names an Actor) and every read of patient data becomes
// an AuditRecord on the topic herald.audit.v1, keyed by trust. The records of
// one trust form a chain: sequence 1, 2, 3, ... each carrying the SHA-256 of
// the previous one (Hash over Canonical). Anchors (AuditAnchored) record a
// chain's head on a separate topic, so a stream cut short after an anchor is
// caught too.
//
// A record holds ids, actors, times, policy versions and short non-clinical
// details (step, via, decline reason code, channel): never report text,
// demographics, free-text notes or the action's text.
package audit

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/herald-health/herald/platform/eventlog"
	auditv1 "github.com/herald-health/herald/proto/gen/herald/audit/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// Topics of the audit trail.
const (
	// TopicRecords is the chained audit stream, key = trust.
	TopicRecords = "herald.audit.v1"
	// TopicIntake holds what is to be chained (AuditEntry), key = trust:
	// the one order in which a trust's records are chained.
	TopicIntake = "herald.audit-intake.v1"
	// TopicAnchors holds AuditAnchored events, key = trust.
	TopicAnchors = "herald.audit-anchors.v1"
	// TopicPolicyBundles is rules' topic of policy bundle events
	// (BundleProposed, BundleReviewed; the usual Event envelope, tenant set,
	// no alert id): the auditor forwards them too, once the topic exists.
	TopicPolicyBundles = "herald.policy-bundles.v1"
)

// Topics names the audit trail's topics.
type Topics struct {
	Records, Intake, Anchors string
}

// DefaultTopics are the production names.
func DefaultTopics() Topics {
	return Topics{Records: TopicRecords, Intake: TopicIntake, Anchors: TopicAnchors}
}

// TopicsFor returns the audit topics that go with an event log: the
// production names beside herald.alert-events.v1, and names derived from
// any other log's (a test's, a second deployment's), so that two logs on
// one cluster never share, and so fork, one trail.
func TopicsFor(eventsTopic string) Topics {
	if eventsTopic == "" || eventsTopic == eventlog.TopicEvents {
		return DefaultTopics()
	}
	return Topics{Records: eventsTopic + ".audit", Intake: eventsTopic + ".audit-intake", Anchors: eventsTopic + ".audit-anchors"}
}

// Specs returns the topics to create: kept forever whatever the log's
// retention (an audit trail outlives the records it speaks of), never
// compacted (a compacted chain would lose records), as many partitions as
// the log.
func (t Topics) Specs(cfg eventlog.Config) []kafka.TopicConfig {
	isr := strconv.Itoa(cfg.MinInsyncReplicas)
	var specs []kafka.TopicConfig
	for _, name := range []string{t.Records, t.Intake, t.Anchors} {
		specs = append(specs, kafka.TopicConfig{Topic: name, NumPartitions: cfg.Partitions, ReplicationFactor: cfg.ReplicationFactor,
			ConfigEntries: []kafka.ConfigEntry{
				{ConfigName: "cleanup.policy", ConfigValue: "delete"},
				{ConfigName: "retention.ms", ConfigValue: "-1"},
				{ConfigName: "min.insync.replicas", ConfigValue: isr},
			}})
	}
	return specs
}

// TypeRecordViewed is the event type of a read of patient data recorded
// straight to the intake (it is not an event of the alert log).
const TypeRecordViewed = "RecordViewed"

// actorName is the full name of the message that says who acted.
const actorName = protoreflect.FullName("herald.events.v1.Actor")

// EntryOf returns the audit entry of an event of the alert log, and false
// when the event is not audited: it is audited when its payload names an
// Actor (a person's command or read), when it is a resend (a
// NotificationSent caused by an operator), or when it is a policy bundle's
// event (its type starts with "Bundle"). The entry has no sequence and no
// hashes yet.
func EntryOf(ev *eventsv1.Event) (*auditv1.AuditRecord, bool) {
	m := ev.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("payload"))
	if fd == nil || ev.GetTenant() == "" || ev.GetEventId() == "" {
		return nil, false
	}
	if _, anchor := ev.GetPayload().(*eventsv1.Event_AuditAnchored); anchor {
		return nil, false
	}
	payload := m.Get(fd).Message()
	typ := string(fd.Message().Name())
	rec := &auditv1.AuditRecord{
		Trust:      ev.GetTenant(),
		AlertId:    ev.GetAlertId(),
		EventId:    ev.GetEventId(),
		EventType:  typ,
		OccurredAt: ev.GetOccurredAt(),
		Producer:   ev.GetProducer(),
	}
	if p := ev.GetPolicy(); p != nil {
		rec.PolicyId, rec.PolicyVersion, rec.PolicyContentHash = p.GetPolicyId(), p.GetVersion(), p.GetContentHash()
	}
	actor, hasActor := actorOf(payload)
	if hasActor {
		rec.Actor = actor
	}
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_AlertAcknowledged:
		rec.Detail = fmt.Sprintf("step=%d via=%s", p.AlertAcknowledged.GetStep(), p.AlertAcknowledged.GetVia())
	case *eventsv1.Event_AlertDeclined:
		rec.Detail = fmt.Sprintf("step=%d reason=%s", p.AlertDeclined.GetStep(), p.AlertDeclined.GetReason())
	case *eventsv1.Event_BundleProposed:
		fillPolicy(rec, p.BundleProposed.GetRef())
		rec.Detail = fmt.Sprintf("proposed round=%d", p.BundleProposed.GetRound())
	case *eventsv1.Event_BundleReviewed:
		fillPolicy(rec, p.BundleReviewed.GetRef())
		rec.Detail = fmt.Sprintf("%s round=%d proposer=%s", strings.ToLower(strings.TrimPrefix(p.BundleReviewed.GetOutcome().String(), "BUNDLE_REVIEW_OUTCOME_")),
			p.BundleReviewed.GetRound(), p.BundleReviewed.GetProposer().GetPersonId())
	case *eventsv1.Event_NotificationSent:
		op, resend := strings.CutPrefix(ev.GetCausationId(), "operator:")
		if !resend {
			return nil, false
		}
		rec.Actor = &auditv1.AuditActor{PersonId: op, IdentityProvider: "operator"}
		rec.Detail = fmt.Sprintf("resend notification=%s step=%d channel=%s", p.NotificationSent.GetNotificationId(),
			p.NotificationSent.GetStep(), p.NotificationSent.GetChannel())
		return rec, true
	}
	if !hasActor && !strings.HasPrefix(typ, "Bundle") {
		return nil, false
	}
	return rec, true
}

// personFields are the payload fields that say who acted, in the order
// they are preferred: an Actor (commands on alerts), then the people of a
// policy bundle's events (the reviewer of a review, the proposer of a
// proposal: rules' PolicyPerson).
var personFields = []protoreflect.Name{"actor", "reviewer", "proposer"}

// fillPolicy records the bundle a policy event is about, when the envelope
// names none.
func fillPolicy(rec *auditv1.AuditRecord, ref *eventsv1.PolicyRef) {
	if rec.GetPolicyId() == "" && rec.GetPolicyVersion() == "" {
		rec.PolicyId, rec.PolicyVersion, rec.PolicyContentHash = ref.GetPolicyId(), ref.GetVersion(), ref.GetContentHash()
	}
}

// actorOf finds the payload's field that names who acted and copies the
// fields that say who. Fields added later (issuer, subject, acr, the
// relaying service) are read by name when the message has them.
func actorOf(payload protoreflect.Message) (*auditv1.AuditActor, bool) {
	fields := payload.Descriptor().Fields()
	var candidates []protoreflect.FieldDescriptor
	for _, name := range personFields {
		if f := fields.ByName(name); f != nil {
			candidates = append(candidates, f)
		}
	}
	for i := range fields.Len() {
		if f := fields.Get(i); f.Kind() == protoreflect.MessageKind && f.Message().FullName() == actorName {
			candidates = append(candidates, f)
		}
	}
	for _, f := range candidates {
		if f.Kind() != protoreflect.MessageKind || f.IsList() || f.IsMap() || !isPerson(f.Message()) {
			continue
		}
		if !payload.Has(f) {
			return &auditv1.AuditActor{}, true
		}
		a := payload.Get(f).Message()
		str := func(names ...string) string {
			for _, n := range names {
				if fd := a.Descriptor().Fields().ByName(protoreflect.Name(n)); fd != nil && fd.Kind() == protoreflect.StringKind {
					if v := a.Get(fd).String(); v != "" {
						return v
					}
				}
			}
			return ""
		}
		return &auditv1.AuditActor{
			PersonId:         str("person_id"),
			Role:             str("role"),
			IdentityProvider: str("identity_provider"),
			Issuer:           str("issuer"),
			Subject:          str("subject"),
			Acr:              str("acr", "assurance_level"),
			RelayingService:  str("relaying_service", "relayed_by", "service"),
		}, true
	}
	return nil, false
}

// isPerson reports whether a message says who a person is: Actor, or any
// message with a person id or a subject.
func isPerson(m protoreflect.MessageDescriptor) bool {
	return m.FullName() == actorName || m.Fields().ByName("person_id") != nil || m.Fields().ByName("subject") != nil
}
