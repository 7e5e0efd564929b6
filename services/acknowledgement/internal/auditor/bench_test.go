package auditor_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/herald-health/herald/proto/gen/herald/audit/v1"
	"github.com/herald-health/herald/services/acknowledgement/audit"
)

// BenchmarkChainer measures how fast one running auditor replica chains a
// burst of entries put on the intake at once (per entry: a ListOffsets, a
// read-back fetch and an acks=all append), over 4 trusts on the real Kafka
// (docs/performance.md, "The audit trail"). Run with -benchtime 1x.
func BenchmarkChainer(b *testing.B) {
	const n = 1000
	for b.Loop() {
		b.StopTimer()
		h := newHarness(b)
		h.start("bench", nil)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		entry := func(i int) *auditv1.AuditRecord {
			return &auditv1.AuditRecord{Trust: fmt.Sprintf("R%02d", i%4), AlertId: fmt.Sprintf("alert-%d", i), EventId: fmt.Sprintf("ev-%d", i),
				EventType: "AlertAcknowledged", Actor: &auditv1.AuditActor{PersonId: "dr-x"}, OccurredAt: timestamppb.Now()}
		}
		// Warm up: the replica has joined its groups once this is chained.
		warm := entry(-1)
		if err := audit.Submit(ctx, h.writer, h.topics.Intake, warm); err != nil {
			b.Fatal(err)
		}
		h.waitChained([]string{warm.GetEventId()})
		var ids []string
		var msgs []kafka.Message
		for i := range n {
			e := entry(i)
			v, _ := proto.Marshal(&auditv1.AuditEntry{Record: e})
			msgs = append(msgs, kafka.Message{Topic: h.topics.Intake, Key: []byte(e.GetTrust()), Value: v})
			ids = append(ids, e.GetEventId())
		}
		b.StartTimer()
		start := time.Now()
		if err := h.writer.PutMany(ctx, msgs...); err != nil {
			b.Fatal(err)
		}
		h.waitChained(ids)
		elapsed := time.Since(start)
		cancel()
		b.ReportMetric(float64(n)/elapsed.Seconds(), "records/s")
		b.ReportMetric(float64(elapsed.Microseconds())/1000/n, "ms/record")
	}
}
