package clock

import (
	"testing"
	"time"
)

func TestSimulatedFiresWaitersInOrderWhenAdvanced(t *testing.T) {
	start := time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC)
	c := NewSimulated(start)
	late := c.After(30 * time.Minute)
	early := c.After(5 * time.Minute)
	if got := c.Waiters(); got != 2 {
		t.Fatalf("waiters: got %d, want 2", got)
	}

	c.Advance(10 * time.Minute)
	select {
	case at := <-early:
		if want := start.Add(10 * time.Minute); !at.Equal(want) {
			t.Fatalf("early fired at %v, want %v", at, want)
		}
	default:
		t.Fatal("early waiter did not fire after its deadline")
	}
	select {
	case <-late:
		t.Fatal("late waiter fired before its deadline")
	default:
	}

	c.Advance(20 * time.Minute)
	select {
	case <-late:
	default:
		t.Fatal("late waiter did not fire at its deadline")
	}
	if got := c.Now(); !got.Equal(start.Add(30 * time.Minute)) {
		t.Fatalf("now: got %v, want %v", got, start.Add(30*time.Minute))
	}
}

func TestSimulatedNeverMovesBackwards(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewSimulated(start)
	c.Set(start.Add(-time.Hour))
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("now: got %v, want %v", got, start)
	}
}

func TestSimulatedAfterZeroFiresAtOnce(t *testing.T) {
	c := NewSimulated(time.Unix(0, 0))
	select {
	case <-c.After(0):
	default:
		t.Fatal("After(0) did not fire at once")
	}
}
