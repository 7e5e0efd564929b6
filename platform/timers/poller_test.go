package timers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/testinfra"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// runPoller runs p in the background until the test ends.
func runPoller(t *testing.T, p *Poller, h Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// The deadline is generous because the machines that run the suite are
// shared: on a loaded machine 10,000 claims under -race have taken longer
// than 20 s. It bounds a hang; it never judges speed.
func eventually(t *testing.T, cond func() bool, msg string, args ...any) {
	t.Helper()
	require.Eventually(t, cond, 90*time.Second, 5*time.Millisecond, append([]any{msg}, args...)...)
}

func TestFourPollersFireEachTimerOnce(t *testing.T) {
	const n = 10_000
	for _, shards := range []int{1, 4} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			ctx := context.Background()
			s, clk, rdb := newStore(t, func(c *Config) { c.Shards = shards })

			// given 10,000 due timers
			ts := make([]Timer, n)
			for i := range ts {
				ts[i] = Timer{ID: fmt.Sprintf("alert-%05d:0:timeout", i), Due: t0.Add(-time.Duration(i%1000) * time.Millisecond)}
			}
			require.NoError(t, s.ArmMany(ctx, ts...))

			// when four replicas poll the same Redis
			var mu sync.Mutex
			fired := map[string]int{}
			var total atomic.Int64
			h := func(_ context.Context, c Claimed) error {
				mu.Lock()
				fired[c.ID]++
				mu.Unlock()
				total.Add(1)
				return nil
			}
			for range 4 {
				p, err := NewPoller(replica(t, rdb, clk, s.cfg), PollerConfig{Batch: 50, Concurrency: 8})
				require.NoError(t, err)
				runPoller(t, p, h)
			}

			// then every timer fires exactly once and the store is empty
			eventually(t, func() bool {
				st, err := s.Stats(ctx)
				require.NoError(t, err)
				return total.Load() >= n && st == Stats{}
			}, "fired %d of %d", total.Load(), n)
			mu.Lock()
			defer mu.Unlock()
			require.Len(t, fired, n)
			for id, k := range fired {
				require.Equal(t, 1, k, "timer %s fired %d times", id, k)
			}
		})
	}
}

// sleeps records the poller's Sleeping hook.
type sleeps struct {
	mu sync.Mutex
	at []time.Time
}

func (s *sleeps) hook(until time.Time) {
	s.mu.Lock()
	s.at = append(s.at, until)
	s.mu.Unlock()
}

func (s *sleeps) sleptUntil(t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.at) > 0 && s.at[len(s.at)-1].Equal(t)
}

func TestPollerSleepsUntilDeadlineAndWakesEarly(t *testing.T) {
	for _, via := range []string{"same process", "other replica (pub/sub)"} {
		t.Run(via, func(t *testing.T) {
			ctx := context.Background()
			// pollers sleep up to two hours, so arms due sooner wake them
			s, clk, rdb := newStore(t, func(c *Config) { c.WakeWithin = 2 * time.Hour })
			armer := s
			if via != "same process" {
				armer = replica(t, rdb, clk, s.cfg)
			}
			require.NoError(t, s.Arm(ctx, Timer{ID: "late", Due: t0.Add(time.Hour)}))

			var sl sleeps
			firedAt := make(chan time.Time, 2)
			const lookahead = 50 * time.Millisecond
			p, err := NewPoller(s, PollerConfig{MaxSleep: 2 * time.Hour, Lookahead: lookahead, Hooks: Hooks{Sleeping: sl.hook}})
			require.NoError(t, err)
			runPoller(t, p, func(_ context.Context, c Claimed) error {
				firedAt <- clk.Now()
				return nil
			})

			// given a poller asleep until the only deadline, an hour away
			eventually(t, func() bool { return sl.sleptUntil(t0.Add(time.Hour - lookahead)) }, "poller did not sleep until the deadline")
			eventually(t, func() bool {
				n, err := rdb.PubSubNumSub(ctx, s.wake).Result()
				require.NoError(t, err)
				return n[s.wake] == 1
			}, "poller not subscribed")

			// when a timer due in a minute is armed
			require.NoError(t, armer.Arm(ctx, Timer{ID: "soon", Due: t0.Add(time.Minute)}))

			// then the poller wakes and goes back to sleep until the new
			// deadline (less the lookahead)
			eventually(t, func() bool { return sl.sleptUntil(t0.Add(time.Minute - lookahead)) }, "poller did not wake early")
			// and claims it ahead of its deadline but does not fire it early
			clk.Set(t0.Add(time.Minute - lookahead))
			eventually(t, func() bool {
				st, err := s.Stats(ctx)
				require.NoError(t, err)
				return st.Leased == 1
			}, "not claimed ahead")
			time.Sleep(20 * time.Millisecond)
			select {
			case <-firedAt:
				t.Fatal("fired before its deadline")
			default:
			}
			// and fires it at its deadline, not on a tick
			var at time.Time
			eventually(t, func() bool {
				clk.Set(t0.Add(time.Minute)) // re-fires waiters registered after the hook
				select {
				case at = <-firedAt:
					return true
				default:
					return false
				}
			}, "timer did not fire")
			require.Equal(t, t0.Add(time.Minute), at)
		})
	}
}

func TestHandlerErrorRetriesWithBackoff(t *testing.T) {
	ctx := context.Background()
	s, clk, _ := newStore(t)
	var logs bytes.Buffer
	require.NoError(t, s.Arm(ctx, Timer{ID: "a1:0:timeout", Due: t0, Payload: []byte("NHS 943 476 5919")}))

	var calls atomic.Int32
	var mu sync.Mutex
	var lateness []time.Duration
	p, err := NewPoller(s, PollerConfig{
		RetryMin: 10 * time.Second, RetryMax: time.Minute,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
		Hooks: Hooks{Fired: func(c Claimed, late time.Duration, err error) {
			mu.Lock()
			lateness = append(lateness, late)
			mu.Unlock()
		}},
	})
	require.NoError(t, err)
	runPoller(t, p, func(_ context.Context, c Claimed) error {
		switch calls.Add(1) {
		case 1:
			return errors.New("kafka unavailable")
		case 2:
			panic("boom")
		}
		return nil
	})

	// given a handler that fails, then panics, then succeeds:
	// it fires at once, after 10 s, then after 20 s more
	eventually(t, func() bool { return calls.Load() == 1 }, "first fire")
	for _, step := range []struct {
		advance time.Duration
		calls   int32
	}{{9 * time.Second, 1}, {time.Second, 2}, {19 * time.Second, 2}, {time.Second, 3}} {
		eventually(t, func() bool {
			st, err := s.Stats(ctx)
			require.NoError(t, err)
			return st == Stats{Due: 1}
		}, "timer not released")
		eventually(t, func() bool { return clk.Waiters() == 1 }, "poller not asleep")
		clk.Advance(step.advance)
		if step.calls > calls.Load() {
			eventually(t, func() bool { clk.Advance(0); return calls.Load() == step.calls }, "fire %d", step.calls)
		} else {
			time.Sleep(20 * time.Millisecond)
			require.Equal(t, step.calls, calls.Load(), "fired before its retry delay")
		}
	}
	eventually(t, func() bool {
		st, err := s.Stats(ctx)
		require.NoError(t, err)
		return st == Stats{}
	}, "timer not confirmed")
	eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(lateness) == 3 }, "hooks")
	mu.Lock()
	require.Equal(t, []time.Duration{0, 10 * time.Second, 30 * time.Second}, lateness)
	mu.Unlock()

	// and the logs name the timer but never carry its payload
	require.Contains(t, logs.String(), "a1:0:timeout")
	require.Contains(t, logs.String(), "panicked")
	require.NotContains(t, logs.String(), "943 476 5919") // the whole payload: a timestamp may hold "943"
}

func TestPollerBacksOffWhenRedisIsUnreachable(t *testing.T) {
	addr := testinfra.FreePort(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	clk := clock.NewSimulated(t0)
	s, err := New(rdb, clk, DefaultConfig())
	require.NoError(t, err)
	var mu sync.Mutex
	var errs []error
	p, err := NewPoller(s, PollerConfig{Hooks: Hooks{Error: func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}}})
	require.NoError(t, err)
	runPoller(t, p, func(context.Context, Claimed) error { return nil })
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(errs) }

	// given Redis is down, then the poller reports the address and waits
	// on the clock between attempts: 100 ms, then 200 ms
	eventually(t, func() bool { return count() == 1 }, "first error")
	mu.Lock()
	require.Contains(t, errs[0].Error(), addr)
	mu.Unlock()
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, 1, count(), "retried without waiting: busy loop")
	clk.Advance(100 * time.Millisecond)
	eventually(t, func() bool { return count() == 2 }, "second error")
	clk.Advance(100 * time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, 2, count(), "backoff did not grow")
	clk.Advance(100 * time.Millisecond)
	eventually(t, func() bool { return count() == 3 }, "third error")
}

func TestPollerRearmsAfterWipe(t *testing.T) {
	ctx := context.Background()
	s, clk, rdb := newStore(t)
	var rearms atomic.Int32
	fired := make(chan string, 4)
	var sl sleeps
	p, err := NewPoller(s, PollerConfig{
		EpochEvery: 10 * time.Second,
		Hooks:      Hooks{Sleeping: sl.hook},
		OnEpochLost: func(ctx context.Context) error {
			// the owner re-arms from its log: one open timer
			rearms.Add(1)
			return s.Arm(ctx, Timer{ID: "from-log", Due: t0.Add(time.Hour)})
		},
	})
	require.NoError(t, err)
	runPoller(t, p, func(_ context.Context, c Claimed) error { fired <- c.ID; return nil })

	// given the first start (no epoch yet), then the owner re-arms once
	eventually(t, func() bool { return rearms.Load() == 1 && sl.sleptUntil(t0.Add(time.Second)) }, "first start re-arm")

	// when Redis is wiped
	require.NoError(t, rdb.FlushDB(ctx).Err())

	// then the next epoch check re-arms the timers from the log
	eventually(t, func() bool {
		clk.Advance(time.Second)
		return rearms.Load() == 2
	}, "wipe not detected")
	clk.Set(t0.Add(time.Hour))
	eventually(t, func() bool {
		clk.Advance(time.Second)
		select {
		case id := <-fired:
			require.Equal(t, "from-log", id)
			return true
		default:
			return false
		}
	}, "re-armed timer did not fire")
}

func TestPollerSleepsUntilLeaseExpiryThenFiresAgain(t *testing.T) {
	ctx := context.Background()
	s, clk, rdb := newStore(t, func(c *Config) { c.Lease = time.Second })
	require.NoError(t, s.Arm(ctx, Timer{ID: "a", Due: t0}))

	// given a replica that claimed the timer and died: its lease ends in
	// 50 ms, inside the poller's 100 ms look-ahead
	dead := replica(t, rdb, clk, s.cfg)
	first, err := dead.Claim(ctx, 1)
	require.NoError(t, err)
	require.Len(t, first, 1)
	clk.Advance(950 * time.Millisecond)

	var sl sleeps
	attempts := make(chan int, 1)
	p, err := NewPoller(s, PollerConfig{Lookahead: 100 * time.Millisecond, Hooks: Hooks{Sleeping: sl.hook}})
	require.NoError(t, err)
	runPoller(t, p, func(_ context.Context, c Claimed) error { attempts <- c.Attempt; return nil })

	// then the poller sleeps until the lease expiry (it does not spin)
	eventually(t, func() bool { return sl.sleptUntil(first[0].LeaseUntil) }, "poller did not sleep until the lease expiry")

	// and fires the timer again once the lease has expired
	clk.Set(first[0].LeaseUntil)
	select {
	case n := <-attempts:
		require.Equal(t, 2, n)
	case <-time.After(20 * time.Second):
		t.Fatal("timer did not fire after its lease expired")
	}
	require.ErrorIs(t, dead.Confirm(ctx, first[0]), ErrLeaseLost)
}

func TestShutdownReleasesTimersInFlight(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newStore(t)
	require.NoError(t, s.ArmMany(ctx, Timer{ID: "a", Due: t0}, Timer{ID: "b", Due: t0}))

	// given a poller whose handler for "a" is running and "b" already done
	started := make(chan struct{})
	p, err := NewPoller(s, PollerConfig{Concurrency: 1, Batch: 1})
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- p.Run(rctx, func(hctx context.Context, c Claimed) error {
			if c.ID == "b" {
				return nil
			}
			close(started)
			<-hctx.Done()
			return hctx.Err()
		})
	}()
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("handler did not start")
	}

	// when the replica shuts down
	cancel()
	require.NoError(t, <-done)

	// then "a" is back in the due set at once, for another replica, and
	// nothing is left leased
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(0), st.Leased)
	cs, err := s.Claim(ctx, 10)
	require.NoError(t, err)
	want := []string{"a"}
	if st.Due == 2 { // shut down before "b" was claimed
		want = []string{"a", "b"}
	}
	require.ElementsMatch(t, want, ids(cs))
}

func TestCancelWhileFiringIsFencedOff(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newStore(t)
	require.NoError(t, s.Arm(ctx, Timer{ID: "a", Due: t0}))

	started, proceed := make(chan struct{}), make(chan struct{})
	errs := make(chan error, 4)
	p, err := NewPoller(s, PollerConfig{Hooks: Hooks{Error: func(err error) { errs <- err }}})
	require.NoError(t, err)
	runPoller(t, p, func(context.Context, Claimed) error {
		close(started)
		<-proceed
		return nil
	})

	// given a handler running for "a"
	<-started
	// when "a" is cancelled meanwhile and the handler then succeeds
	found, err := s.Cancel(ctx, "a")
	require.NoError(t, err)
	require.True(t, found)
	close(proceed)

	// then its confirm reports the lost lease and the timer stays gone
	select {
	case err := <-errs:
		require.ErrorIs(t, err, ErrLeaseLost)
	case <-time.After(20 * time.Second):
		t.Fatal("no lease-lost report")
	}
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, Stats{}, st)
}
