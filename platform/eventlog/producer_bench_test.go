package eventlog

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// BenchmarkConcurrentAppends compares, in one run, the producer with
// kafka-go's Writer as Herald configured it before (BatchSize 100,
// BatchTimeout 1 ms): 64 callers each writing one record at a time and
// waiting for acks=all (as notification's workers and acknowledgement's
// lanes do), over 12 partitions. It reports records per produce request
// and the latency of a write, over at least 20,000 writes (make bench runs
// one iteration).
func BenchmarkConcurrentAppends(b *testing.B) {
	cfg := producerTopics(b, 12)
	const callers = 64
	for _, c := range []struct {
		name string
		open func(kafka.RoundTripper) (write func(context.Context, kafka.Message) error, closer func())
	}{
		{"kafka-go-writer", func(rt kafka.RoundTripper) (func(context.Context, kafka.Message) error, func()) {
			kw := &kafka.Writer{Addr: kafka.TCP(cfg.Brokers...), Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
				BatchTimeout: time.Millisecond, BatchSize: 100, Transport: rt}
			return func(ctx context.Context, m kafka.Message) error { return kw.WriteMessages(ctx, m) }, func() { _ = kw.Close() }
		}},
		{"group-commit", func(rt kafka.RoundTripper) (func(context.Context, kafka.Message) error, func()) {
			p := newProducer(cfg.Brokers, rt)
			return func(ctx context.Context, m kafka.Message) error { return p.Write(ctx, m) }, p.Close
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			counter := newGatedTransport()
			close(counter.open)
			write, closer := c.open(counter)
			defer closer()
			total := int64(max(b.N, 20000))
			var next atomic.Int64
			lat := make([][]time.Duration, callers)
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for i := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						n := next.Add(1)
						if n > total {
							return
						}
						began := time.Now()
						if err := write(context.Background(), kafka.Message{Topic: cfg.EventsTopic, Key: []byte(fmt.Sprint("alert-", n)), Value: make([]byte, 300)}); err != nil {
							b.Error(err)
							return
						}
						lat[i] = append(lat[i], time.Since(began))
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			var all []time.Duration
			for _, l := range lat {
				all = append(all, l...)
			}
			b.ReportMetric(float64(total)/elapsed.Seconds(), "records/s")
			b.ReportMetric(float64(total)/float64(counter.produces.Load()), "records/request")
			ReportLatency(b, all)
		})
	}
}

// ReportLatency reports the median and p99 of lat in milliseconds (the
// external benchmarks use it too).
func ReportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}
