package app

import (
	"sync"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/clock"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/notification/internal/domain"
)

// Workers sending to one person at the same moment: with a limit of one
// message per window, exactly one is let through, the others are held for
// the window; a send given back frees its slot. (Deciding first and
// counting only after the send let the whole burst through.)
func TestReserveSendLetsOneOfABurstThrough(t *testing.T) {
	clk := clock.NewSimulated(time.Date(2026, 11, 29, 15, 0, 0, 0, time.UTC))
	e := &Engine{o: Options{Clock: clk, Limit: domain.RateLimit{Max: 1, Window: time.Minute}}, history: map[string][]time.Time{}}
	const workers = 8
	var wg sync.WaitGroup
	delays := make(chan time.Duration, workers)
	for range workers {
		wg.Go(func() {
			_, d := e.reserveSend(eventsv1.Category_CATEGORY_URGENT, "p1")
			delays <- d
		})
	}
	wg.Wait()
	close(delays)
	through := 0
	for d := range delays {
		switch d {
		case 0:
			through++
		case time.Minute:
		default:
			t.Fatalf("a held message waits %v, want the window (1m0s)", d)
		}
	}
	if through != 1 {
		t.Fatalf("messages let through at once: got %d of %d, want 1", through, workers)
	}

	// The send that was let through failed: its slot is given back.
	e.history["p2"] = nil
	at, d := e.reserveSend(eventsv1.Category_CATEGORY_URGENT, "p2")
	if d != 0 {
		t.Fatalf("first message to p2 held %v", d)
	}
	e.releaseSend("p2", at)
	if _, d := e.reserveSend(eventsv1.Category_CATEGORY_URGENT, "p2"); d != 0 {
		t.Fatalf("after a send was given back, the next is held %v, want let through", d)
	}
	// CRITICAL is never held back.
	if _, d := e.reserveSend(eventsv1.Category_CATEGORY_CRITICAL, "p1"); d != 0 {
		t.Fatalf("a CRITICAL message held %v", d)
	}
}
