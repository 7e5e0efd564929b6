package acknowledgement_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/timers"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/internal/adapters/kafkalog"
	"github.com/herald-health/herald/services/acknowledgement/internal/adapters/redisstore"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Benchmarks run against the real test Kafka and Redis, e.g.
//
//	go test -run '^$' -bench . -benchtime 1x ./services/acknowledgement/
//
// HERALD_BENCH_PENDING (default 1,000,000) and HERALD_BENCH_OPEN (default
// 100,000) scale them down for a quick look.

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

// BenchmarkTimerLateness measures, with 1,000,000 timers pending in Redis,
// how late a step timeout is seen as AlertEscalated by the event consumer:
// poller claim, projection read, decision, append (acks=all), consumer
// fetch and apply. Lateness = the consumer applying the escalation minus
// the step's deadline.
func BenchmarkTimerLateness(b *testing.B) {
	pending := envInt("HERALD_BENCH_PENDING", 1_000_000)
	fired := envInt("HERALD_BENCH_FIRED", 2000)
	e := newEnv(b)
	e.cfg.Log.EventsTopic = testinfraTopic(b, "ack-bench-events", 12)
	e.cfg.Log.StateTopic = testinfraTopic(b, "ack-bench-state", 12)
	e.cfg.Log.Partitions = 12
	e.cfg.TimerMaxSleep = time.Second
	e.cfg.TimerConcurrency = 64
	e.writer = eventlog.NewWriter(e.cfg.Log, "bench", telemetry.Nop("bench"))
	b.Cleanup(func() { _ = e.writer.Close() })
	b.Cleanup(func() { _ = e.rdb.FlushDB(context.Background()).Err() })

	ctx := context.Background()
	start := time.Now()
	tcfg := timers.DefaultConfig()
	tcfg.Namespace = e.cfg.RedisNamespace
	ts, err := timers.New(e.rdb, e.clock, tcfg)
	require.NoError(b, err)
	far := time.Now().Add(48 * time.Hour)
	const chunk = 5000
	batch := make([]timers.Timer, 0, chunk)
	for lo := 0; lo < pending; lo += chunk {
		batch = batch[:0]
		for i := lo; i < min(pending, lo+chunk); i++ {
			batch = append(batch, timers.Timer{ID: "pending-" + strconv.Itoa(i) + ":step", Due: far.Add(time.Duration(i) * time.Millisecond), Payload: []byte("{}")})
		}
		require.NoError(b, ts.ArmMany(ctx, batch...))
	}
	b.Logf("armed %d pending timers in %v", pending, time.Since(start).Round(time.Millisecond))

	var mu sync.Mutex
	due := map[string]time.Time{}
	var late, decide, seen []time.Duration
	seenAt := map[string]bool{}
	done := make(chan struct{})
	hooks := app.Hooks{Received: func(ev *eventsv1.Event) {
		if _, ok := ev.GetPayload().(*eventsv1.Event_AlertEscalated); !ok {
			return
		}
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if d, ok := due[ev.GetAlertId()]; ok && !seenAt[ev.GetAlertId()] {
			seenAt[ev.GetAlertId()] = true
			seen = append(seen, now.Sub(d))
		}
	}, BeforeAppend: func(_ context.Context, t lifecycle.Timer, _ []*eventsv1.Event) {
		d := time.Since(t.Due)
		mu.Lock()
		decide = append(decide, d)
		mu.Unlock()
	}, Applied: func(st *lifecycle.State, ev *eventsv1.Event, applied bool) {
		if _, ok := ev.GetPayload().(*eventsv1.Event_AlertEscalated); !ok || !applied {
			return
		}
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if d, ok := due[ev.GetAlertId()]; ok {
			late = append(late, now.Sub(d))
			delete(due, ev.GetAlertId())
			if len(late) == fired {
				close(done)
			}
		}
	}}
	r1 := e.start("b1", hooks)
	_ = r1

	// Route the measured alerts: deadlines spread evenly over the spread
	// (HERALD_BENCH_SPREAD_SECONDS, default 40 s: 50 escalations a second,
	// far above a national peak), starting once routing is surely done.
	spread := time.Duration(envInt("HERALD_BENCH_SPREAD_SECONDS", 40)) * time.Second
	first := time.Now().Add(15 * time.Second)
	var events []*eventsv1.Event
	for i := range fired {
		id := eventlog.ID("bench", strconv.Itoa(i), first.String())
		d := first.Add(time.Duration(i) * spread / time.Duration(fired))
		mu.Lock()
		due[id] = d
		mu.Unlock()
		now := time.Now()
		rt := routedEvent(id, &eventsv1.Clocks{AcknowledgeBy: timestamppb.New(now.Add(time.Hour))}, d.Sub(now), time.Hour)
		rt.OccurredAt = timestamppb.New(now)
		events = append(events, raisedEvent(id), rt)
	}
	for lo := 0; lo < len(events); lo += 500 {
		e.append(ctx, events[lo:min(len(events), lo+500)]...)
	}
	b.Logf("routed %d alerts; routing done %v before the first deadline", fired, time.Until(first).Round(time.Millisecond))

	b.ResetTimer()
	select {
	case <-done:
	case <-time.After(time.Until(first) + 2*time.Minute):
		logs := e.logs.String()
		b.Fatalf("only %d of %d escalations seen; log tail:\n%s", len(late), fired, logs[max(0, len(logs)-4000):])
	}
	b.StopTimer()
	mu.Lock()
	slices.Sort(late)
	p50, p99, p999 := percentile(late, 0.5), percentile(late, 0.99), percentile(late, 0.999)
	slices.Sort(seen)
	s50, s99, s999 := percentile(seen, 0.5), percentile(seen, 0.99), percentile(seen, 0.999)
	b.ReportMetric(float64(s50.Microseconds())/1000, "seen-p50-ms")
	b.ReportMetric(float64(s99.Microseconds())/1000, "seen-p99-ms")
	b.ReportMetric(float64(s999.Microseconds())/1000, "seen-p99.9-ms")
	b.Logf("seen lateness (the consumer receives AlertEscalated): p50 %v, p99 %v, p99.9 %v", s50, s99, s999)
	slices.Sort(decide)
	b.Logf("decision lateness (claim to decided, before the append): p50 %v, p99 %v, max %v",
		percentile(decide, 0.5), percentile(decide, 0.99), decide[len(decide)-1])
	mu.Unlock()
	b.ReportMetric(float64(p50.Microseconds())/1000, "applied-p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "applied-p99-ms")
	b.ReportMetric(float64(p999.Microseconds())/1000, "applied-p99.9-ms")
	if os.Getenv("HERALD_BENCH_DEBUG") != "" {
		for _, line := range strings.Split(e.logs.String(), "\n") {
			if strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
				fmt.Fprintln(os.Stderr, line)
			}
		}
	}
	b.Logf("applied lateness (the consumer has applied it, state published, next timer armed) over %d escalations with %d pending timers: p50 %v, p99 %v, p99.9 %v, max %v",
		fired, pending, p50, p99, p999, late[len(late)-1])
}

// BenchmarkRebuildAfterWipe measures recovery after Redis lost everything:
// 100,000 open alerts are restored from the compacted state topic into the
// projection and their timers re-armed, deadlines first.
func BenchmarkRebuildAfterWipe(b *testing.B) {
	open := envInt("HERALD_BENCH_OPEN", 100_000)
	e := newEnv(b)
	e.cfg.Log.StateTopic = testinfraTopic(b, "ack-bench-rebuild", 12)
	b.Cleanup(func() { _ = e.rdb.FlushDB(context.Background()).Err() })
	ctx := context.Background()

	// Write the states straight to the state topic.
	start := time.Now()
	w := eventlog.NewWriter(e.cfg.Log, "bench", telemetry.Nop("bench"))
	defer w.Close()
	now := time.Now()
	var msgs []kafka.Message
	for i := range open {
		id := eventlog.ID("rebuild", strconv.Itoa(i))
		st := lifecycle.Fold(raisedEvent(id), routedEvent(id, &eventsv1.Clocks{
			CommunicateBy: timestamppb.New(now.Add(time.Hour)), AcknowledgeBy: timestamppb.New(now.Add(2 * time.Hour)),
			ActionBy: timestamppb.New(now.Add(24 * time.Hour))}, time.Duration(i%3600)*time.Second+time.Hour, time.Hour, time.Hour))
		st.Offset = int64(i)
		v, err := proto.Marshal(st)
		require.NoError(b, err)
		msgs = append(msgs, kafka.Message{Topic: e.cfg.Log.StateTopic, Key: []byte(id), Value: v})
		if len(msgs) == 2000 {
			require.NoError(b, w.PutMany(ctx, msgs...))
			msgs = msgs[:0]
		}
	}
	if len(msgs) > 0 {
		require.NoError(b, w.PutMany(ctx, msgs...))
	}
	b.Logf("wrote %d states to the state topic in %v", open, time.Since(start).Round(time.Millisecond))

	store := redisstore.New(e.rdb, e.cfg.RedisNamespace)
	tcfg := timers.DefaultConfig()
	tcfg.Namespace = e.cfg.RedisNamespace
	ts, err := timers.New(e.rdb, e.clock, tcfg)
	require.NoError(b, err)
	a := app.New(app.Deps{States: store, Recovery: store, Topic: kafkalog.NewStateTopic(e.cfg.Log, w), Timers: ts, Lister: store,
		Logger: logging.New(os.Stderr, slog.LevelInfo, "bench")})

	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		require.NoError(b, e.rdb.FlushDB(ctx).Err())
		b.StartTimer()
		t0 := time.Now()
		// As RunRecovery does, retry a recovery that hit a Kafka or Redis
		// hiccup (the shared test broker has them under load).
		var err error
		for attempt := 1; attempt <= 3; attempt++ {
			if err = a.Recover(ctx, "bench"); err == nil || !errors.Is(err, fault.ErrUnavailable) {
				break
			}
			b.Logf("recovery attempt %d: %v; retrying", attempt, err)
		}
		require.NoError(b, err)
		b.ReportMetric(time.Since(t0).Seconds(), "rebuild-s")
	}
	b.StopTimer()
	st, err := ts.Stats(ctx)
	require.NoError(b, err)
	require.Equal(b, int64(open), st.Due, "one timer per alert")
	ready, err := store.Ready(ctx)
	require.NoError(b, err)
	require.True(b, ready)
	fmt.Fprintf(os.Stderr, "rebuilt %d open alerts (%d timers)\n", open, st.Due)
}
