package eventlog

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/testinfra"
)

// BenchmarkEventlogVsFranzGo is the comparison spike of issue 23: Herald's
// event log client (its group-commit producer and its fetcher, on
// kafka-go's protocol and transport) against franz-go's kgo client (already
// a module dependency through the development broker), for Herald's
// pattern: keyed records of 300 bytes, acks=all, each write waited for
// (synchronous appends), consumed by a consumer group that marks a record
// only after handling it and commits every 200 ms. Evidence only: kafka-go
// stays the stack.
//
// Two patterns, each in its own fresh topic of 12 partitions (each
// partition given a record first):
//   - paced: one writer at 30 records/s for 5 s with the consumer running
//     (the low rate where issue 23 found the cost per alert highest);
//     cpu-µs/record is this process's CPU (both clients) over the phase,
//     from the first write to the last record consumed.
//   - burst: 64 concurrent writers, 5,000 records, then the group consumes
//     them from the start; cpu-µs/produced and cpu-µs/consumed apart.
//
// kgo is configured to match: RequiredAcks(AllISRAcks), ProducerLinger(0)
// (its default, 10 ms, would add up to 10 ms to every synchronous write),
// idempotent writes (its default), AutoCommitMarks with a 200 ms interval.
// CPU is getrusage(RUSAGE_SELF): the broker's own CPU is not counted.
func BenchmarkEventlogVsFranzGo(b *testing.B) {
	for _, client := range []string{"eventlog", "franz-go"} {
		b.Run(client+"/paced-30-per-s", func(b *testing.B) { benchPaced(b, client, 30, 5*time.Second) })
		b.Run(client+"/burst-5000", func(b *testing.B) { benchBurst(b, client, 5000, 64) })
	}
}

// spikeClient is one side of the comparison: a synchronous keyed write
// and a consumer group calling handle for every record.
type spikeClient struct {
	write   func(ctx context.Context, key string, value []byte) error
	consume func(ctx context.Context, group string, handle func(key []byte)) // returns when ctx ends
	close   func()
}

func openSpikeClient(b *testing.B, name string, cfg Config) spikeClient {
	b.Helper()
	switch name {
	case "eventlog":
		rt := cfg.newTransport("bench")
		p := newProducer(cfg.Brokers, rt)
		return spikeClient{
			write: func(ctx context.Context, key string, value []byte) error {
				return p.Write(ctx, kafka.Message{Topic: cfg.EventsTopic, Key: []byte(key), Value: value})
			},
			consume: func(ctx context.Context, group string, handle func([]byte)) {
				_ = Consume(ctx, ConsumerConfig{Config: cfg, GroupID: group, Raw: true, Logger: logging.Discard()},
					func(_ context.Context, d Delivery) error { handle(d.Key); return nil })
			},
			close: func() { p.Close(); rt.CloseIdleConnections() },
		}
	case "franz-go":
		pc, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0),
			kgo.DefaultProduceTopic(cfg.EventsTopic))
		if err != nil {
			b.Fatal(err)
		}
		return spikeClient{
			write: func(ctx context.Context, key string, value []byte) error {
				return pc.ProduceSync(ctx, &kgo.Record{Key: []byte(key), Value: value}).FirstErr()
			},
			consume: func(ctx context.Context, group string, handle func([]byte)) {
				cc, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(cfg.EventsTopic),
					kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AutoCommitMarks(), kgo.AutoCommitInterval(200*time.Millisecond))
				if err != nil {
					b.Error(err)
					return
				}
				defer cc.Close()
				for ctx.Err() == nil {
					fs := cc.PollFetches(ctx)
					fs.EachRecord(func(r *kgo.Record) {
						handle(r.Key)
						cc.MarkCommitRecords(r)
					})
				}
			},
			close: pc.Close,
		}
	}
	b.Fatalf("unknown client %s", name)
	return spikeClient{}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// counter counts the records a consumer handled whose key starts with
// "alert-" (the topics hold warm-up records too).
func counter(n *atomic.Int64) func([]byte) {
	return func(key []byte) {
		if strings.HasPrefix(string(key), "alert-") {
			n.Add(1)
		}
	}
}

// startSpikeConsumer runs the client's consumer group and returns a count
// of records handled; it has joined and consumes when it returns (a
// record written after it started went through).
func startSpikeConsumer(b *testing.B, c spikeClient) *atomic.Int64 {
	b.Helper()
	var n, warm atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	count := counter(&n)
	go func() {
		defer close(done)
		c.consume(ctx, testinfra.UniqueName("bench"), func(key []byte) {
			if string(key) == "spike-warm-up" {
				warm.Add(1)
			}
			count(key)
		})
	}()
	b.Cleanup(func() { cancel(); <-done })
	if err := c.write(context.Background(), "spike-warm-up", make([]byte, 300)); err != nil {
		b.Fatal(err)
	}
	waitCount(b, &warm, 1)
	return &n
}

func waitCount(b *testing.B, n *atomic.Int64, want int64) {
	b.Helper()
	deadline := time.Now().Add(120 * time.Second)
	for n.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("consumed %d of %d records in 120 s", n.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func benchPaced(b *testing.B, client string, rate int, d time.Duration) {
	cfg := producerTopics(b, 12) // warmed up: a fresh topic's first writes can meet a leader not yet known
	c := openSpikeClient(b, client, cfg)
	defer c.close()
	n := startSpikeConsumer(b, c)
	total := int64(rate) * int64(d/time.Second)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	b.ResetTimer()
	cpu0, t0 := cpuTime(), time.Now()
	for i := range total {
		<-tick.C
		if err := c.write(context.Background(), fmt.Sprint("alert-", i), make([]byte, 300)); err != nil {
			b.Fatal(err)
		}
	}
	waitCount(b, n, total)
	cpu, wall := cpuTime()-cpu0, time.Since(t0)
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/float64(total), "cpu-µs/record")
	b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cores")
}

func benchBurst(b *testing.B, client string, total, writers int) {
	cfg := producerTopics(b, 12) // warmed up: a fresh topic's first writes can meet a leader not yet known
	c := openSpikeClient(b, client, cfg)
	defer c.close()
	b.ResetTimer()
	cpu0, t0 := cpuTime(), time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(total) {
					return
				}
				if err := c.write(context.Background(), fmt.Sprint("alert-", i), make([]byte, 300)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	produceCPU, produceWall := cpuTime()-cpu0, time.Since(t0)

	var n atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	cpu1, t1 := cpuTime(), time.Now()
	go func() { defer close(done); c.consume(ctx, testinfra.UniqueName("bench"), counter(&n)) }()
	waitCount(b, &n, int64(total))
	consumeCPU, consumeWall := cpuTime()-cpu1, time.Since(t1)
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64(produceCPU.Microseconds())/float64(total), "cpu-µs/produced")
	b.ReportMetric(float64(total)/produceWall.Seconds(), "produced/s")
	b.ReportMetric(float64(consumeCPU.Microseconds())/float64(total), "cpu-µs/consumed")
	b.ReportMetric(float64(total)/consumeWall.Seconds(), "consumed/s")
}
