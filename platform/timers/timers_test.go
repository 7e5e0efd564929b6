package timers

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/testinfra"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC)

// newStore returns a store on a private Redis database with a simulated
// clock at t0 (and the client, to make more replicas on the same DB).
func newStore(t *testing.T, mutate ...func(*Config)) (*Store, *clock.Simulated, *redis.Client) {
	t.Helper()
	rdb := testinfra.NewRedis(t)
	clk := clock.NewSimulated(t0)
	cfg := DefaultConfig()
	cfg.Namespace = "test"
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := New(rdb, clk, cfg)
	require.NoError(t, err)
	return s, clk, rdb
}

// replica returns another store on the same Redis database, with its own
// connection pool, as another replica would have.
func replica(t *testing.T, rdb *redis.Client, clk clock.Clock, cfg Config) *Store {
	t.Helper()
	c := redis.NewClient(rdb.Options())
	t.Cleanup(func() { _ = c.Close() })
	s, err := New(c, clk, cfg)
	require.NoError(t, err)
	return s
}

func ids(cs []Claimed) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

func TestArmClaimConfirm(t *testing.T) {
	ctx := context.Background()
	s, clk, _ := newStore(t)

	// given a timer due in ten minutes
	require.NoError(t, s.Arm(ctx, Timer{ID: "a1:0:timeout", Due: t0.Add(10 * time.Minute), Payload: []byte("p")}))

	// when claimed before it is due, then nothing is returned
	cs, err := s.Claim(ctx, 10)
	require.NoError(t, err)
	require.Empty(t, cs)
	next, ok, err := s.Next(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, t0.Add(10*time.Minute), next.UTC())

	// when the deadline passes, then one claim returns it with its payload
	clk.Advance(10 * time.Minute)
	cs, err = s.Claim(ctx, 10)
	require.NoError(t, err)
	require.Len(t, cs, 1)
	c := cs[0]
	require.Equal(t, "a1:0:timeout", c.ID)
	require.Equal(t, []byte("p"), c.Payload)
	require.Equal(t, t0.Add(10*time.Minute), c.Due.UTC())
	require.Equal(t, 1, c.Attempt)
	require.Equal(t, clk.Now().Add(s.Lease()), c.LeaseUntil)
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, Stats{Due: 0, Leased: 1}, st)

	// and a second claim does not return it while leased
	cs, err = s.Claim(ctx, 10)
	require.NoError(t, err)
	require.Empty(t, cs)

	// when confirmed, then it is gone everywhere
	require.NoError(t, s.Confirm(ctx, c))
	st, err = s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, Stats{}, st)
	_, ok, err = s.Next(ctx)
	require.NoError(t, err)
	require.False(t, ok)
	require.ErrorIs(t, s.Confirm(ctx, c), ErrLeaseLost)
}

func TestCancelAndRearm(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		when func(t *testing.T, s *Store)
		// then, after the clock reached t0+30m: ids claimed
		want []string
	}{
		{
			name: "cancelled timer never fires",
			when: func(t *testing.T, s *Store) {
				found, err := s.Cancel(ctx, "a")
				require.NoError(t, err)
				require.True(t, found)
				found, err = s.Cancel(ctx, "a")
				require.NoError(t, err)
				require.False(t, found)
			},
			want: []string{"b"},
		},
		{
			name: "re-arm later moves the deadline past now",
			when: func(t *testing.T, s *Store) {
				require.NoError(t, s.Arm(ctx, Timer{ID: "a", Due: t0.Add(time.Hour)}))
			},
			want: []string{"b"},
		},
		{
			name: "re-arm earlier keeps one timer",
			when: func(t *testing.T, s *Store) {
				require.NoError(t, s.Arm(ctx, Timer{ID: "b", Due: t0.Add(time.Minute)}))
				require.NoError(t, s.Arm(ctx, Timer{ID: "b", Due: t0.Add(time.Minute)}))
			},
			want: []string{"b", "a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, clk, _ := newStore(t)
			// given two timers
			require.NoError(t, s.ArmMany(ctx,
				Timer{ID: "a", Due: t0.Add(10 * time.Minute)},
				Timer{ID: "b", Due: t0.Add(20 * time.Minute)}))
			tt.when(t, s)
			clk.Advance(30 * time.Minute)
			cs, err := s.Claim(ctx, 10)
			require.NoError(t, err)
			require.Equal(t, tt.want, ids(cs))
		})
	}
}

func TestRearmWhileLeased(t *testing.T) {
	ctx := context.Background()
	s, clk, _ := newStore(t)
	require.NoError(t, s.Arm(ctx, Timer{ID: "a", Due: t0, Payload: []byte("v1")}))
	cs, err := s.Claim(ctx, 1)
	require.NoError(t, err)
	require.Len(t, cs, 1)

	// given an identical re-arm (e.g. a rebuild) while the timer is firing,
	// then the lease is kept and the handler's confirm still works
	require.NoError(t, s.Arm(ctx, Timer{ID: "a", Due: t0, Payload: []byte("v1")}))
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, Stats{Leased: 1}, st)
	require.NoError(t, s.Confirm(ctx, cs[0]))

	// given a re-arm with a new deadline while firing, then the old claim's
	// confirm is fenced off and the new deadline stands
	require.NoError(t, s.Arm(ctx, Timer{ID: "a", Due: t0, Payload: []byte("v1")}))
	cs, err = s.Claim(ctx, 1)
	require.NoError(t, err)
	require.Len(t, cs, 1)
	require.NoError(t, s.Arm(ctx, Timer{ID: "a", Due: t0.Add(time.Hour), Payload: []byte("v2")}))
	require.ErrorIs(t, s.Confirm(ctx, cs[0]), ErrLeaseLost)
	require.ErrorIs(t, s.Release(ctx, cs[0], 0), ErrLeaseLost)
	clk.Advance(time.Hour)
	again, err := s.Claim(ctx, 1)
	require.NoError(t, err)
	require.Len(t, again, 1)
	require.Equal(t, []byte("v2"), again[0].Payload)
	require.Equal(t, 1, again[0].Attempt, "attempts restart on re-arm")
}

func TestExpiredLeaseFiresAgain(t *testing.T) {
	ctx := context.Background()
	s, clk, rdb := newStore(t, func(c *Config) { c.Lease = 30 * time.Second })
	other := replica(t, rdb, clk, s.cfg)
	require.NoError(t, s.Arm(ctx, Timer{ID: "a", Due: t0}))

	// given a claim that is never confirmed (the replica died)
	first, err := s.Claim(ctx, 1)
	require.NoError(t, err)
	require.Len(t, first, 1)

	// when the lease has not yet expired, then nobody else gets it
	clk.Advance(29 * time.Second)
	cs, err := other.Claim(ctx, 1)
	require.NoError(t, err)
	require.Empty(t, cs)
	next, ok, err := other.Next(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, first[0].LeaseUntil, next.UTC(), "the lease expiry is the next wake-up")

	// when it expires, then another replica claims it again
	clk.Advance(time.Second)
	second, err := other.Claim(ctx, 1)
	require.NoError(t, err)
	require.Len(t, second, 1)
	require.Equal(t, "a", second[0].ID)
	require.Equal(t, 2, second[0].Attempt)
	require.Equal(t, t0, second[0].Due.UTC(), "due stays the armed deadline")
	require.NotEqual(t, first[0].Token, second[0].Token)

	// and the late confirm of the first claim changes nothing
	require.ErrorIs(t, s.Confirm(ctx, first[0]), ErrLeaseLost)
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, Stats{Leased: 1}, st)
	require.NoError(t, other.Confirm(ctx, second[0]))
}

func TestReleaseWithDelay(t *testing.T) {
	ctx := context.Background()
	s, clk, _ := newStore(t)
	require.NoError(t, s.Arm(ctx, Timer{ID: "a", Due: t0, Payload: []byte("x")}))
	cs, err := s.Claim(ctx, 1)
	require.NoError(t, err)
	require.Len(t, cs, 1)

	require.NoError(t, s.Release(ctx, cs[0], 5*time.Second))
	clk.Advance(4 * time.Second)
	none, err := s.Claim(ctx, 1)
	require.NoError(t, err)
	require.Empty(t, none)
	clk.Advance(time.Second)
	again, err := s.Claim(ctx, 1)
	require.NoError(t, err)
	require.Len(t, again, 1)
	require.Equal(t, 2, again[0].Attempt)
	require.Equal(t, t0, again[0].Due.UTC())
	require.Equal(t, []byte("x"), again[0].Payload)
}

func TestClaimOrderAndBatches(t *testing.T) {
	ctx := context.Background()
	for _, shards := range []int{1, 4} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			s, clk, _ := newStore(t, func(c *Config) { c.Shards = shards })
			var ts []Timer
			for i := range 1200 { // more than one arm batch
				ts = append(ts, Timer{ID: fmt.Sprintf("t%04d", i), Due: t0.Add(time.Duration(i) * time.Millisecond)})
			}
			require.NoError(t, s.ArmMany(ctx, ts...))
			clk.Advance(time.Hour)
			seen := map[string]bool{}
			for {
				cs, err := s.Claim(ctx, 100)
				require.NoError(t, err)
				require.LessOrEqual(t, len(cs), 100)
				if len(cs) == 0 {
					break
				}
				if shards == 1 {
					for i := 1; i < len(cs); i++ {
						require.False(t, cs[i].Due.Before(cs[i-1].Due), "earliest first")
					}
				}
				for _, c := range cs {
					require.False(t, seen[c.ID], "claimed twice: %s", c.ID)
					seen[c.ID] = true
				}
			}
			require.Len(t, seen, 1200)
		})
	}
}

func TestInvalidInput(t *testing.T) {
	ctx := context.Background()
	s, _, rdb := newStore(t)
	tests := []struct {
		name  string
		err   error
		field string
	}{
		{"empty id", s.Arm(ctx, Timer{Due: t0}), "timer id"},
		{"zero due", s.Arm(ctx, Timer{ID: "a"}), "due"},
		{"big payload", s.Arm(ctx, Timer{ID: "a", Due: t0, Payload: make([]byte, MaxPayload+1)}), "payload"},
		{"cancel empty", func() error { _, err := s.Cancel(ctx, ""); return err }(), "timer id"},
		{"claim zero", func() error { _, err := s.Claim(ctx, 0); return err }(), "claim max"},
		{"namespace", func() error {
			_, err := New(rdb, clock.Real{}, Config{Namespace: "a{b}", Shards: 1, Lease: time.Second})
			return err
		}(), "namespace"},
		{"shards", func() error { _, err := New(rdb, clock.Real{}, Config{Namespace: "a", Lease: time.Second}); return err }(), "shards"},
		{"lease", func() error { _, err := New(rdb, clock.Real{}, Config{Namespace: "a", Shards: 1}); return err }(), "lease"},
		{"poller batch", func() error { _, err := NewPoller(s, PollerConfig{Batch: -1}); return err }(), "batch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorIs(t, tt.err, ErrInvalid)
			require.Contains(t, tt.err.Error(), tt.field)
		})
	}
}

func TestUnreachableRedisNamesAddress(t *testing.T) {
	ctx := context.Background()
	addr := testinfra.FreePort(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	s, err := New(rdb, clock.NewSimulated(t0), DefaultConfig())
	require.NoError(t, err)
	err = s.Arm(ctx, Timer{ID: "a", Due: t0})
	require.Error(t, err)
	require.Contains(t, err.Error(), addr)
	_, err = s.Claim(ctx, 1)
	require.Error(t, err)
	require.Contains(t, err.Error(), addr)
	_, err = s.CheckEpoch(ctx)
	require.Error(t, err)
	require.Contains(t, err.Error(), addr)
	require.False(t, errors.Is(err, ErrInvalid))
}

func TestSubMillisecondDeadlineIsNeverClaimedEarly(t *testing.T) {
	ctx := context.Background()
	s, clk, _ := newStore(t)
	due := t0.Add(1500 * time.Microsecond)
	require.NoError(t, s.Arm(ctx, Timer{ID: "a", Due: due}))

	clk.Set(t0.Add(1999 * time.Microsecond))
	cs, err := s.Claim(ctx, 1)
	require.NoError(t, err)
	require.Empty(t, cs, "claimed before the rounded-up millisecond")

	clk.Set(t0.Add(2 * time.Millisecond))
	cs, err = s.Claim(ctx, 1)
	require.NoError(t, err)
	require.Len(t, cs, 1)
	require.Equal(t, due, cs[0].Due.UTC(), "the exact deadline is kept")
}
