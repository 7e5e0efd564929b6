package eventlog_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/telemetry"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// BenchmarkAppendSync measures one synchronous Append (acks=all) at a time:
// the latency an intake caller waits before it may say yes.
func BenchmarkAppendSync(b *testing.B) {
	cfg := testConfig(b, 1)
	w := eventlog.NewWriter(cfg, "bench", telemetry.Nop("bench"))
	defer w.Close()
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := w.Append(ctx, raised(fmt.Sprintf("alert-%d", i), i)); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	eventlog.ReportLatency(b, lat)
}

// BenchmarkAppendBatched measures throughput with 100-event Appends from 8
// concurrent callers.
func BenchmarkAppendBatched(b *testing.B) {
	cfg := testConfig(b, 1)
	w := eventlog.NewWriter(cfg, "bench", telemetry.Nop("bench"))
	defer w.Close()
	ctx := context.Background()
	var n atomic.Int64
	start := time.Now()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			batch := make([]*eventsv1.Event, 0, 100)
			for j := 0; j < 100; j++ {
				i := n.Add(1)
				batch = append(batch, raised(fmt.Sprintf("alert-%d", i), int(i)))
			}
			if err := w.Append(ctx, batch...); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "events/s")
}

// BenchmarkConsume measures consumer-group throughput over 4 partitions.
func BenchmarkConsume(b *testing.B) {
	cfg := testConfig(b, 4)
	w := eventlog.NewWriter(cfg, "bench", telemetry.Nop("bench"))
	defer w.Close()
	ctx := context.Background()
	total := max(b.N, 1) * 1000
	batch := make([]*eventsv1.Event, 0, 500)
	for i := 0; i < total; i++ {
		batch = append(batch, raised(fmt.Sprintf("alert-%d", i), i))
		if len(batch) == cap(batch) {
			if err := w.Append(ctx, batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		if err := w.Append(ctx, batch...); err != nil {
			b.Fatal(err)
		}
	}
	var got atomic.Int64
	done := make(chan struct{})
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.ResetTimer()
	start := time.Now()
	go func() {
		_ = eventlog.Consume(cctx, eventlog.ConsumerConfig{Config: cfg, GroupID: fmt.Sprintf("bench-%d", time.Now().UnixNano())}, func(context.Context, eventlog.Delivery) error {
			if got.Add(1) == int64(total) {
				close(done)
			}
			return nil
		})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("consumed %d of %d", got.Load(), total)
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "events/s")
}
