package reporting

import (
	"testing"
	"time"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

func foldSpec(s spec) Summary {
	var evs []Event
	for i, p := range s.events() {
		e, ok := FromProto(p, typeOf(p), 0, int64(i))
		if !ok {
			panic("event without payload")
		}
		evs = append(evs, e)
	}
	return Fold(evs, fakeRef)
}

func typeOf(e *eventsv1.Event) string {
	m := e.ProtoReflect()
	return string(m.WhichOneof(m.Descriptor().Oneofs().ByName("payload")).Message().Name())
}

// TestFold: the summary of an alert from its events, and the coarse state
// each outcome ends in.
func TestFold(t *testing.T) {
	base := spec{tenant: "RXF", id: "a1", accession: "ACC1", referrer: "r1", team: "t1",
		category: eventsv1.Category_CATEGORY_CRITICAL, raised: t0, target: time.Hour}
	acked := base
	acked.ack = 30 * time.Minute
	acked.declines = []eventsv1.DeclineReason{eventsv1.DeclineReason_DECLINE_REASON_WRONG_TEAM}
	s := foldSpec(acked)
	if s.State != StateAcknowledged || !s.AcknowledgedAt.Equal(t0.Add(30*time.Minute)) || s.AcknowledgedBy != "p-r1" ||
		s.Category != "CRITICAL" || !s.AcknowledgeBy.Equal(t0.Add(time.Hour)) || s.Accession != "ACC1" || s.TeamID != "t1" ||
		s.Reference != "HRD-A1" || len(s.DeclinedReasons) != 1 || s.DeclinedReasons[0] != "WRONG_TEAM" || s.Events != 5 {
		t.Fatalf("acknowledged: %+v", s)
	}
	never := base
	never.failsafe, never.breach = true, []eventsv1.ClockKind{eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE}
	if s := foldSpec(never); s.State != StateFailsafe || !s.BreachedAcknowledge || s.BreachedCommunicate || s.FailsafeQueuedAt == nil {
		t.Fatalf("fail-safe: %+v", s)
	}
	never.closed = true
	if s := foldSpec(never); s.State != StateClosed {
		t.Fatalf("closed: %+v", s)
	}
	c := base
	c.cancelled = true
	if s := foldSpec(c); s.State != StateCancelled {
		t.Fatalf("cancelled: %+v", s)
	}
	q := base
	q.quarantined = true
	if s := foldSpec(q); s.State != StateQuarantined || !s.Quarantined || s.Category != "" {
		t.Fatalf("quarantined: %+v", s)
	}
}
