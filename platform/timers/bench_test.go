package timers

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/testinfra"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// Benchmarks run against the real test Redis, e.g.
//
//	go test -run '^$' -bench . -benchtime 1x ./timers/
//
// Each loads 1,000,000 pending timers first (pipelined ZADD/HSET in
// batches), as a store of a large trust network would hold.

const pending = 1_000_000

// loadPending writes n timers straight into the store's keys with pipelined
// variadic ZADD and HSET (far faster than n Arm calls), ids prefixed by
// prefix, due at due(i).
func loadPending(tb testing.TB, s *Store, prefix string, n int, due func(i int) time.Time) {
	tb.Helper()
	ctx := context.Background()
	const per = 1000 // members per command
	for lo := 0; lo < n; lo += 100 * per {
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for c := lo; c < min(n, lo+100*per); c += per {
				byShard := map[int][3][]any{}
				for i := c; i < min(n, c+per); i++ {
					id := prefix + strconv.Itoa(i)
					d := ms(due(i))
					exact := us(due(i))
					sh := s.shard(id)
					v := byShard[sh]
					v[0] = append(v[0], redis.Z{Score: mustFloat(d), Member: id})
					v[1] = append(v[1], id, exact)
					v[2] = append(v[2], id, "payload-of-"+id)
					byShard[sh] = v
				}
				for sh, v := range byShard {
					zs := make([]redis.Z, len(v[0]))
					for j, z := range v[0] {
						zs[j] = z.(redis.Z)
					}
					p.ZAdd(ctx, s.keys[sh][keyDue], zs...)
					p.HSet(ctx, s.keys[sh][keyDueAt], v[1]...)
					p.HSet(ctx, s.keys[sh][keyPayload], v[2]...)
				}
			}
			return nil
		})
		require.NoError(tb, err)
	}
}

func mustFloat(s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		panic(err)
	}
	return f
}

// confirmAll confirms claimed timers in one script call.
func confirmAll(tb testing.TB, s *Store, cs []Claimed) {
	tb.Helper()
	ops := make([]finishOp, len(cs))
	for i, c := range cs {
		ops[i] = finishOp{c: c}
	}
	for _, err := range s.finish(context.Background(), ops) {
		require.NoError(tb, err)
	}
}

func benchStore(b *testing.B, clk clock.Clock, shards int) (*Store, *redis.Client) {
	b.Helper()
	rdb := testinfra.NewRedis(b)
	cfg := DefaultConfig()
	cfg.Namespace = "bench"
	cfg.Shards = shards
	s, err := New(rdb, clk, cfg)
	require.NoError(b, err)
	b.Cleanup(func() { _ = rdb.FlushDBAsync(context.Background()).Err() }) // free the memory without blocking Redis
	require.NoError(b, s.ensureScripts(context.Background(), finishScript, claimScript, armScript))
	return s, rdb
}

// BenchmarkClaim measures one claimer leasing and confirming (pipelined)
// due timers while 1,000,000 are pending (all due, so every claim returns a
// full batch): timers/s for claim+confirm, and for the claim script alone.
func BenchmarkClaim(b *testing.B) {
	for _, batch := range []int{100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			ctx := context.Background()
			clk := clock.NewSimulated(t0)
			s, _ := benchStore(b, clk, 1)
			load := func() {
				loadPending(b, s, "t", pending, func(i int) time.Time { return t0.Add(-time.Hour + time.Duration(i)*time.Microsecond) })
			}
			load()
			left := pending
			claimed := 0
			var claiming time.Duration
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if left < batch {
					b.StopTimer()
					require.NoError(b, s.rdb.FlushDB(ctx).Err())
					load()
					left = pending
					b.StartTimer()
				}
				t := time.Now()
				cs, err := s.Claim(ctx, batch)
				claiming += time.Since(t)
				require.NoError(b, err)
				require.Len(b, cs, batch)
				confirmAll(b, s, cs)
				left -= batch
				claimed += batch
			}
			b.ReportMetric(float64(claimed)/time.Since(start).Seconds(), "timers/s")
			b.ReportMetric(float64(claimed)/claiming.Seconds(), "claim-only-timers/s")
		})
	}
}

// BenchmarkPollers measures four pollers (replicas, each with its own
// connection pool) firing 100,000 due timers with a no-op handler, one
// Confirm per timer, while 1,000,000 far-future timers are pending.
func BenchmarkPollers(b *testing.B) {
	const due = 100_000
	ctx := context.Background()
	clk := clock.Real{}
	s, rdb := benchStore(b, clk, 1)
	now := time.Now()
	loadPending(b, s, "future-", pending, func(i int) time.Time { return now.Add(24*time.Hour + time.Duration(i)*time.Millisecond) })
	b.ResetTimer()
	var fired atomic.Int64
	var total time.Duration
	for range b.N {
		b.StopTimer()
		fired.Store(0)
		loadPending(b, s, fmt.Sprintf("due-%d-", rand.Int()), due, func(i int) time.Time { return now.Add(-time.Minute) })
		b.StartTimer()
		start := time.Now()
		rctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for range 4 {
			c := redis.NewClient(rdb.Options())
			p, err := NewPoller(replicaOf(b, s, c), PollerConfig{Batch: 100, Concurrency: 32})
			require.NoError(b, err)
			wg.Go(func() {
				defer c.Close()
				_ = p.Run(rctx, func(context.Context, Claimed) error { fired.Add(1); return nil })
			})
		}
		for fired.Load() < due {
			time.Sleep(time.Millisecond)
		}
		total += time.Since(start)
		cancel()
		wg.Wait()
	}
	b.ReportMetric(float64(due*b.N)/total.Seconds(), "timers/s")
}

func replicaOf(tb testing.TB, s *Store, c *redis.Client) *Store {
	r, err := New(c, s.clk, s.cfg)
	require.NoError(tb, err)
	return r
}

// latencies collects fire time minus deadline.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) len() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.d) }

// quantile returns the q-quantile (nearest rank) in milliseconds.
func (l *latencies) quantile(q float64) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := slices.Clone(l.d)
	slices.Sort(s)
	i := min(len(s)-1, int(q*float64(len(s))))
	return float64(s[i]) / float64(time.Millisecond)
}

// dueIn encodes the exact deadline in the payload, so lateness is measured
// against it rather than the stored millisecond.
func dueIn(t time.Time) []byte { return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())) }

func lateness(c Claimed) time.Duration {
	return time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(c.Payload))))
}

// BenchmarkFiringLateness arms 3,000 timers due over the next 1-11 s on top
// of 1,000,000 far-future ones (real clock) and measures fire time minus
// deadline, first for the Poller, then for a baseline that sleeps a fixed
// 5 s and claims whatever is due (as GoAlert's engine and asynq's forwarder
// do). Reports p50/p99/max in ms for both and the baseline/poller ratio,
// and the floor: plain in-process Go timers for the same deadlines during
// the poller phase (what the machine's scheduler allows).
func BenchmarkFiringLateness(b *testing.B) {
	const n = 3000
	const window = 10 * time.Second
	ctx := context.Background()
	s, rdb := benchStore(b, clock.Real{}, 1)
	now := time.Now()
	loadPending(b, s, "future-", pending, func(i int) time.Time { return now.Add(24*time.Hour + time.Duration(i)*time.Millisecond) })
	armer := replicaOf(b, s, redis.NewClient(rdb.Options()))

	// floor: in-process Go timers for the same deadlines, no Redis at all;
	// on a loaded machine this is the scheduling lateness nothing can beat.
	var floor latencies
	arm := func(prefix string) time.Time {
		start := time.Now().Add(time.Second)
		ts := make([]Timer, n)
		for i := range ts {
			due := start.Add(time.Duration(rand.Int64N(int64(window))))
			ts[i] = Timer{ID: fmt.Sprintf("%s-%d", prefix, i), Due: due, Payload: dueIn(due)}
			if prefix[0] == 'p' {
				time.AfterFunc(time.Until(due), func() { floor.add(time.Since(due)) })
			}
		}
		require.NoError(b, armer.ArmMany(ctx, ts...))
		return start.Add(window)
	}
	wait := func(l *latencies, until time.Time) {
		for l.len() < n {
			require.True(b, time.Now().Before(until.Add(30*time.Second)), "only %d of %d fired", l.len(), n)
			time.Sleep(10 * time.Millisecond)
		}
	}

	b.ResetTimer()
	for it := range b.N {
		// the Poller
		var poller latencies
		floor = latencies{}
		rctx, cancel := context.WithCancel(ctx)
		p, err := NewPoller(s, PollerConfig{})
		require.NoError(b, err)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = p.Run(rctx, func(_ context.Context, c Claimed) error { poller.add(lateness(c)); return nil })
		}()
		wait(&poller, arm(fmt.Sprintf("p%d", it)))
		cancel()
		<-done

		// the fixed 5 s baseline on the same store
		var base latencies
		bctx, bcancel := context.WithCancel(ctx)
		bdone := make(chan struct{})
		go func() {
			defer close(bdone)
			for {
				select {
				case <-bctx.Done():
					return
				case <-time.After(5 * time.Second):
				}
				for {
					cs, err := s.Claim(bctx, 1000)
					if err != nil {
						return
					}
					for _, c := range cs {
						base.add(lateness(c))
					}
					ops := make([]finishOp, len(cs))
					for i, c := range cs {
						ops[i] = finishOp{c: c}
					}
					s.finish(bctx, ops)
					if len(cs) < 1000 {
						break
					}
				}
			}
		}()
		wait(&base, arm(fmt.Sprintf("b%d", it)).Add(5*time.Second))
		bcancel()
		<-bdone

		if testing.Verbose() {
			poller.mu.Lock()
			var big []time.Duration
			for _, d := range poller.d {
				if d > 5*time.Millisecond {
					big = append(big, d.Round(100*time.Microsecond))
				}
			}
			poller.mu.Unlock()
			b.Logf("poller firings later than 5 ms (in firing order): %v", big)
		}
		b.ReportMetric(floor.quantile(0.5), "go-timer-floor-p50-ms")
		b.ReportMetric(floor.quantile(0.99), "go-timer-floor-p99-ms")
		b.ReportMetric(poller.quantile(0.5), "p50-ms")
		b.ReportMetric(poller.quantile(0.99), "p99-ms")
		b.ReportMetric(poller.quantile(1), "max-ms")
		b.ReportMetric(base.quantile(0.5), "fixed5s-p50-ms")
		b.ReportMetric(base.quantile(0.99), "fixed5s-p99-ms")
		b.ReportMetric(base.quantile(0.99)/max(poller.quantile(0.99), 0.001), "p99-ratio")
		b.ReportMetric(base.quantile(0.5)/max(poller.quantile(0.5), 0.001), "p50-ratio")
	}
}
