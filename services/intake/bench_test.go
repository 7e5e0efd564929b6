package intake_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-health/herald/services/intake"
	"github.com/herald-health/herald/services/intake/internal/mllp"
)

// benchMessage is the reference message with a unique control id and
// accession, so every message is a new alert appended to Kafka.
func benchMessage(b *testing.B, run string, i int) []byte {
	id := fmt.Sprintf("B%s-%d", run, i)
	return variant(b, id, "ACC20261129001", "ACC-"+id)
}

func benchHarness(b *testing.B) *harness {
	return start(b, func(c *intake.Config) { c.HandleTimeout = 30 * time.Second })
}

// BenchmarkMLLPAckLatencyAt200PerSecond sends messages at a fixed 200/s
// (open loop over 10 connections) through MLLP to a real Kafka (acks=all)
// and reports the ACK latency p50 and p99, measured from the scheduled send
// time so a stall is not hidden.
func BenchmarkMLLPAckLatencyAt200PerSecond(b *testing.B) {
	h := benchHarness(b)
	const conns = 10
	const rate = 200
	clients := make([]*mllp.Client, conns)
	for i := range clients {
		c, err := mllp.Dial(context.Background(), h.addrs["mllp"], nil, 30*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	n := max(b.N, 400)
	msgs := make([][]byte, n)
	run := fmt.Sprint(time.Now().UnixNano())
	for i := range msgs {
		msgs[i] = benchMessage(b, run, i)
	}
	type job struct {
		i   int
		due time.Time
	}
	jobs := make(chan job, n)
	lat := make([]time.Duration, n)
	var failures atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for _, c := range clients {
		wg.Go(func() {
			for j := range jobs {
				for d := time.Until(j.due); d > 0; d = time.Until(j.due) {
					time.Sleep(d)
				}
				ack, err := c.Send(msgs[j.i])
				if err != nil || !bytes.Contains(ack, []byte("MSA|AA|")) {
					failures.Add(1)
				}
				lat[j.i] = time.Since(j.due)
			}
		})
	}
	begin := time.Now()
	for i := 0; i < n; i++ {
		jobs <- job{i: i, due: begin.Add(time.Duration(i) * time.Second / rate)}
	}
	close(jobs)
	wg.Wait()
	b.StopTimer()
	if f := failures.Load(); f > 0 {
		b.Fatalf("%d messages not acknowledged AA", f)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
	b.ReportMetric(float64(n)/time.Since(begin).Seconds(), "msgs/s")
}

// BenchmarkMLLPMaxRate10Connections sends as fast as 10 connections can
// (each waiting for its ACK, as MLLP senders do) and reports the sustained
// rate of durably acknowledged messages.
func BenchmarkMLLPMaxRate10Connections(b *testing.B) {
	h := benchHarness(b)
	const conns = 10
	n := max(b.N, 1000)
	run := fmt.Sprint(time.Now().UnixNano())
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = benchMessage(b, run, i)
	}
	var next atomic.Int64
	var failures atomic.Int64
	var wg sync.WaitGroup
	lat := make([]time.Duration, n)
	b.ResetTimer()
	begin := time.Now()
	for range conns {
		wg.Go(func() {
			c, err := mllp.Dial(context.Background(), h.addrs["mllp"], nil, 30*time.Second)
			if err != nil {
				failures.Add(1)
				return
			}
			defer c.Close()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				ack, err := c.Send(msgs[i])
				lat[i] = time.Since(t0)
				if err != nil || !bytes.Contains(ack, []byte("MSA|AA|")) {
					failures.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	b.StopTimer()
	if f := failures.Load(); f > 0 {
		b.Fatalf("%d messages not acknowledged AA", f)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
}
