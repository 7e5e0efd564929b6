package audit

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/eventsign"
	auditv1 "github.com/herald-health/herald/proto/gen/herald/audit/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// AnchorEvent is the anchor of a chain's head, as written to the anchor
// topic (key = trust). Its id is deterministic: anchoring a head twice
// writes the same event.
func AnchorEvent(trust string, sequence uint64, head []byte, reason, producer string, now time.Time) *eventsv1.Event {
	return &eventsv1.Event{
		EventId: AnchorID(trust, sequence, head), AlertId: "audit-anchor:" + trust, Tenant: trust,
		OccurredAt: timestamppb.New(now), Producer: producer, SchemaVersion: eventlog.SchemaVersion,
		Payload: &eventsv1.Event_AuditAnchored{AuditAnchored: &eventsv1.AuditAnchored{
			Trust: trust, Sequence: sequence, HeadHash: head, Reason: reason}},
	}
}

// Placed is a record and where it was read (partition/offset).
type Placed struct {
	Record *auditv1.AuditRecord
	Where  string
}

// Trail is the audit stream and its anchors as read.
type Trail struct {
	Records []Placed
	Anchors []*eventsv1.AuditAnchored
	// AnchoredAt is when each anchor was written (parallel to Anchors).
	AnchoredAt []time.Time
	// Undecodable counts records that are not AuditRecords (each is also
	// a problem for Verify).
	Undecodable []string
	// Forged are the records and anchors refused for their signature
	// (with a key set only): each is a problem for Verify.
	Forged []Problem
}

// PathTrail is the path (herald_events_refused_total) of ReadTrail's reads.
const PathTrail = "audit_trail"

// ReadTrail reads the records topic and the anchor topic up to their ends
// at the time of the call. With cfg.VerifyKeysFile, a record not signed by
// acknowledgement (eventsign.TopicWriters) and an anchor not signed by a
// service that may produce AuditAnchored are left out and named in
// Trail.Forged: a record forged after the last anchor, chained on the
// real head, is found so.
func ReadTrail(ctx context.Context, cfg eventlog.Config, recordsTopic, anchorsTopic string) (*Trail, error) {
	t := &Trail{}
	forged := func(topic, what string) func(int, int64, []byte, error) {
		return func(partition int, offset int64, value []byte, err error) {
			p := Problem{Kind: Forged, Where: fmt.Sprintf("%s/%d/%d", topic, partition, offset), Detail: what + " refused: " + err.Error()}
			if what == "record" {
				var rec auditv1.AuditRecord
				if proto.Unmarshal(value, &rec) == nil {
					p.Trust, p.Sequence = rec.GetTrust(), rec.GetSequence()
				}
			} else {
				var ev eventsv1.Event
				if proto.Unmarshal(value, &ev) == nil {
					p.Trust, p.Sequence = ev.GetAuditAnchored().GetTrust(), ev.GetAuditAnchored().GetSequence()
				}
			}
			t.Forged = append(t.Forged, p)
		}
	}
	err := eventlog.ReadTopicWith(ctx, cfg, recordsTopic, eventlog.ReadOptions{Role: eventsign.TopicAuditRecords, Path: PathTrail, Refused: forged(recordsTopic, "record")}, func(_, value []byte, partition int, offset int64) error {
		where := fmt.Sprintf("%s/%d/%d", recordsTopic, partition, offset)
		var rec auditv1.AuditRecord
		if err := proto.Unmarshal(value, &rec); err != nil {
			t.Undecodable = append(t.Undecodable, where)
			return nil
		}
		t.Records = append(t.Records, Placed{Record: &rec, Where: where})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the audit stream %s: %w", recordsTopic, err)
	}
	err = eventlog.ReadTopicWith(ctx, cfg, anchorsTopic, eventlog.ReadOptions{Events: true, Path: PathTrail, Refused: forged(anchorsTopic, "anchor")}, func(_, value []byte, _ int, _ int64) error {
		var ev eventsv1.Event
		if err := proto.Unmarshal(value, &ev); err != nil || ev.GetAuditAnchored() == nil {
			return nil
		}
		t.Anchors = append(t.Anchors, ev.GetAuditAnchored())
		t.AnchoredAt = append(t.AnchoredAt, ev.GetOccurredAt().AsTime())
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the audit anchors %s: %w", anchorsTopic, err)
	}
	return t, nil
}

// Verify checks the trail (one trust's chain when only is set).
func (t *Trail) Verify(only string) Report {
	v := NewVerifier()
	v.Only = only
	for _, p := range t.Records {
		v.Record(p.Record, p.Where)
	}
	for _, a := range t.Anchors {
		v.Anchor(a)
	}
	rep := v.Finish()
	for _, where := range t.Undecodable {
		rep.Problems = append(rep.Problems, Problem{Kind: Inserted, Where: where, Detail: "a record that is not an audit record"})
	}
	for _, p := range t.Forged {
		if only == "" || p.Trust == only {
			rep.Problems = append(rep.Problems, p)
		}
	}
	return rep
}

// ViewedEntry is the audit entry of a read of patient data: a person (as
// verified) saw the details of an alert. requestID identifies the view (a
// retried request of the same view is the same id, so it is recorded once);
// what names what was shown ("alert-details", "report"), never its content.
func ViewedEntry(trust, alertID, requestID, what string, actor *auditv1.AuditActor, at time.Time) *auditv1.AuditRecord {
	return &auditv1.AuditRecord{Trust: trust, AlertId: alertID, EventId: eventlog.ID("viewed", trust, alertID, requestID),
		EventType: TypeRecordViewed, Actor: actor, OccurredAt: timestamppb.New(at), Detail: "viewed " + what}
}

// Submit puts an entry on the intake topic (key = trust) for the auditor
// to chain, and returns once it is durable (acks=all). A service that shows
// patient data submits the view before it answers: no unrecorded read. An
// error wraps fault.ErrUnavailable; submitting the same entry again is
// harmless (it is chained once).
func Submit(ctx context.Context, w *eventlog.Writer, intakeTopic string, entry *auditv1.AuditRecord) error {
	if entry.GetTrust() == "" || entry.GetEventId() == "" {
		return eventlog.Permanent(fmt.Errorf("audit entry of %s: trust and event id are required", entry.GetEventType()))
	}
	b, err := proto.Marshal(&auditv1.AuditEntry{Record: entry})
	if err != nil {
		return eventlog.Permanent(fmt.Errorf("encode audit entry %s: %w", entry.GetEventId(), err))
	}
	if err := w.Put(ctx, intakeTopic, entry.GetTrust(), b); err != nil {
		return fmt.Errorf("submit audit entry %s: %w", entry.GetEventId(), err)
	}
	return nil
}

// TypeDataKeyDestroyed is the event type of the destruction of a trust's
// patient-data keys (crypto-shredding, platform/sealing), recorded straight
// to the intake by the operator's tool before the keys are destroyed.
const TypeDataKeyDestroyed = "DataKeyDestroyed"

// KeyDestroyedEntry is the audit entry of the destruction of trust's data
// keys keyIDs (sorted by the caller) by actor at at. Its id is a function
// of the trust and the keys, so recording it again (a retried destroy) is
// chained once.
func KeyDestroyedEntry(trust string, keyIDs []string, actor *auditv1.AuditActor, at time.Time) *auditv1.AuditRecord {
	ids := strings.Join(keyIDs, ",")
	return &auditv1.AuditRecord{Trust: trust, EventId: eventlog.ID("keys-destroyed", trust, ids),
		EventType: TypeDataKeyDestroyed, Actor: actor, OccurredAt: timestamppb.New(at), Producer: "heraldctl",
		Detail: "destroyed patient-data keys " + ids}
}
