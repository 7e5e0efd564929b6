package redisbatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
	s := New(rdb)
	defer s.Close()
	ctx := context.Background()
	const callers, calls = 32, 100
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		wg.Go(func() {
			key := fmt.Sprintf("caller:%d", c)
			for i := 1; i <= calls; i++ {
				arg := "ok"
				if i%10 == 0 {
					arg = "fail" // a failing call in the middle of others' batches
				}
				n, err := incrScript.Run(ctx, s, []string{key}, arg).Int64()
				switch {
				case arg == "fail" && (err == nil || !redis.HasErrorPrefix(err, "ASKED")):
					errs <- fmt.Errorf("%s call %d: got %v, want its own script error", key, i, err)
					return
				case arg == "ok" && err != nil:
					errs <- fmt.Errorf("%s call %d: %w", key, i, err)
					return
				case arg == "ok" && n != int64(i-i/10):
					errs <- fmt.Errorf("%s call %d: got %d, want %d (another caller's reply?)", key, i, n, i-i/10)
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
	if trips, total := s.trips.Load(), int64(callers*calls); trips >= total {
		t.Fatalf("%d calls took %d round trips: none were shared", total, trips)
	} else {
		t.Logf("%d calls in %d round trips", total, trips)
	}
}

func TestScriptsPassRepliesAndFallBacksThrough(t *testing.T) {
	rdb := testinfra.NewRedis(t)
	s := New(rdb)
	defer s.Close()
	ctx := context.Background()

	// A script Redis has never seen: EVALSHA fails with NOSCRIPT and Run
	// falls back to EVAL.
	fresh := redis.NewScript(fmt.Sprintf("-- %d\nreturn redis.call('GET', KEYS[1])", time.Now().UnixNano()))
	if err := fresh.Run(ctx, s, []string{"missing"}).Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("a nil reply: got %v, want redis.Nil", err)
	}
	if err := rdb.Set(ctx, "present", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := fresh.Run(ctx, s, []string{"present"}).Text(); err != nil || got != "v" {
		t.Fatalf("got %q, %v; want v", got, err)
	}
	if got, err := fresh.RunRO(ctx, s, []string{"present"}).Text(); err != nil || got != "v" {
		t.Fatalf("read-only: got %q, %v; want v", got, err)
	}

	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := incrScript.Run(done, s, []string{"k"}, "ok").Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("a call with its context done: got %v, want context.Canceled", err)
	}

	s.Close()
	if err := incrScript.Run(ctx, s, []string{"k"}, "ok").Err(); !errors.Is(err, ErrClosed) {
		t.Fatalf("a call after Close: got %v, want ErrClosed", err)
	}
}
