package redisbatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-health/herald/platform/testinfra"
)

// incrScript increments KEYS[1] and returns the new value, or fails when
// ARGV[1] is "fail".
var incrScript = redis.NewScript(`
if ARGV[1] == 'fail' then return redis.error_reply('ASKED to fail') end
return redis.call('INCR', KEYS[1])
`)

func TestConcurrentCallsShareRoundTripsAndKeepTheirOwnReplies(t *testing.T) {
	rdb := testinfra.NewRedis(t)
	b := New(rdb)
	defer b.Close()
	ctx := context.Background()
	shareRoundTrips(t, b, 32, 100, func(c, i int) error {
		key := fmt.Sprintf("caller:%d", c)
		arg := "ok"
		if i%10 == 0 {
			arg = "fail" // a failing call in the middle of others' batches
		}
		n, err := incrScript.Run(ctx, b, []string{key}, arg).Int64()
		switch {
		case arg == "fail" && (err == nil || !redis.HasErrorPrefix(err, "ASKED")):
			return fmt.Errorf("%s call %d: got %v, want its own script error", key, i, err)
		case arg == "ok" && err != nil:
			return fmt.Errorf("%s call %d: %w", key, i, err)
		case arg == "ok" && n != int64(i-i/10):
			return fmt.Errorf("%s call %d: got %d, want %d (another caller's reply?)", key, i, n, i-i/10)
		}
		return nil
	})
}

// shareRoundTrips runs call(caller, i) for i from 1 to calls on each of
// callers goroutines at once (a caller stops at its first error), reports
// every error, and fails unless the calls shared round trips.
func shareRoundTrips(t *testing.T, b *Batcher, callers, calls int, call func(caller, i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		wg.Go(func() {
			for i := 1; i <= calls; i++ {
				if err := call(c, i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if trips, total := b.trips.Load(), int64(callers*calls); trips >= total {
		t.Fatalf("%d calls took %d round trips: none were shared", total, trips)
	} else {
		t.Logf("%d calls in %d round trips", total, trips)
	}
}

func TestScriptsPassRepliesAndFallBacksThrough(t *testing.T) {
	rdb := testinfra.NewRedis(t)
	b := New(rdb)
	defer b.Close()
	ctx := context.Background()

	// A script Redis has never seen: EVALSHA fails with NOSCRIPT and Run
	// falls back to EVAL.
	fresh := redis.NewScript(fmt.Sprintf("-- %d\nreturn redis.call('GET', KEYS[1])", time.Now().UnixNano()))
	if err := fresh.Run(ctx, b, []string{"missing"}).Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("a nil reply: got %v, want redis.Nil", err)
	}
	if err := rdb.Set(ctx, "present", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := fresh.Run(ctx, b, []string{"present"}).Text(); err != nil || got != "v" {
		t.Fatalf("got %q, %v; want v", got, err)
	}
	if got, err := fresh.RunRO(ctx, b, []string{"present"}).Text(); err != nil || got != "v" {
		t.Fatalf("read-only: got %q, %v; want v", got, err)
	}

	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := incrScript.Run(done, b, []string{"k"}, "ok").Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("a call with its context done: got %v, want context.Canceled", err)
	}

	b.Close()
	if err := incrScript.Run(ctx, b, []string{"k"}, "ok").Err(); !errors.Is(err, ErrClosed) {
		t.Fatalf("a call after Close: got %v, want ErrClosed", err)
	}
}

// Pipelines of concurrent callers share round trips; each caller gets its
// own commands back in order, with go-redis's errors.
func TestPipelinesShareRoundTripsAndKeepTheirOwnReplies(t *testing.T) {
	rdb := testinfra.NewRedis(t)
	b := New(rdb)
	defer b.Close()
	ctx := context.Background()
	shareRoundTrips(t, b, 16, 100, func(c, i int) error {
		key := fmt.Sprintf("pipe:%d", c)
		var incr *redis.IntCmd
		var get *redis.StringCmd
		cmds, err := b.Pipelined(ctx, func(p redis.Pipeliner) error {
			incr = p.Incr(ctx, key)
			get = p.Get(ctx, key)
			return nil
		})
		if err != nil || len(cmds) != 2 || incr.Val() != int64(i) || get.Val() != fmt.Sprint(i) {
			return fmt.Errorf("%s call %d: %d cmds, incr %d, get %q, err %v", key, i, len(cmds), incr.Val(), get.Val(), err)
		}
		return nil
	})

	// The first failed command's error, as rdb.Pipelined gives it.
	_, err := b.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "present", "v", 0)
		p.Get(ctx, "absent")
		return nil
	})
	if !errors.Is(err, redis.Nil) {
		t.Fatalf("a pipeline with a missing key: got %v, want redis.Nil", err)
	}
	// An error of fn sends nothing.
	boom := errors.New("boom")
	if _, err := b.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "unsent", "v", 0)
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("fn's error: got %v, want it back", err)
	}
	if n, err := rdb.Exists(ctx, "unsent").Result(); err != nil || n != 0 {
		t.Fatalf("a pipeline whose fn failed was sent (exists %d, %v)", n, err)
	}
}

// Callers that give up while waiting (their context ends) neither stall
// the others nor lose the turn to send.
func TestCallersThatGiveUpDoNotStallTheOthers(t *testing.T) {
	rdb := testinfra.NewRedis(t)
	b := New(rdb)
	defer b.Close()
	const callers, calls = 32, 200
	var wg sync.WaitGroup
	var gaveUp, done atomicCount
	for c := range callers {
		wg.Go(func() {
			for i := range calls {
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if (c+i)%3 == 0 {
					ctx, cancel = context.WithTimeout(context.Background(), 20*time.Microsecond)
				}
				err := incrScript.Run(ctx, b, []string{fmt.Sprintf("giveup:%d", c)}, "ok").Err()
				cancel()
				switch {
				case err == nil:
					done.add()
				case errors.Is(err, context.DeadlineExceeded):
					gaveUp.add()
				default:
					t.Errorf("caller %d call %d: %v", c, i, err)
					return
				}
			}
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatal("callers stalled")
	}
	if done.n.Load()+gaveUp.n.Load() != callers*calls {
		t.Fatalf("%d done and %d gave up of %d", done.n.Load(), gaveUp.n.Load(), callers*calls)
	}
	t.Logf("%d done, %d gave up, %d round trips", done.n.Load(), gaveUp.n.Load(), b.trips.Load())
}

type atomicCount struct{ n atomic.Int64 }

func (a *atomicCount) add() { a.n.Add(1) }
