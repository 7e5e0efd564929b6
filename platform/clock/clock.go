// Package clock makes time a dependency. Services take a Clock; production
// passes Real, tests pass a Simulated clock they can fast-forward, so a test
// can watch a thirty-minute escalation happen in milliseconds.
package clock

import (
	"sort"
	"sync"
	"time"
)

// Clock tells the time and waits.
//
// After returns a channel that receives once the clock has reached now+d.
// With the Real clock it is time.After; with a Simulated clock it fires when
// the test advances the clock past the deadline.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// Real is the wall clock.
type Real struct{}

// Now returns the current wall-clock time.
func (Real) Now() time.Time { return time.Now() }

// After waits for d of wall-clock time.
func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Simulated is a clock that moves only when told to. It is safe for
// concurrent use.
type Simulated struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

// NewSimulated returns a simulated clock set to start.
func NewSimulated(start time.Time) *Simulated {
	return &Simulated{now: start}
}

// Now returns the simulated time.
func (s *Simulated) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

// After returns a channel that fires once the simulated time reaches now+d.
func (s *Simulated) After(d time.Duration) <-chan time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan time.Time, 1)
	at := s.now.Add(d)
	if d <= 0 {
		ch <- s.now
		return ch
	}
	s.waiters = append(s.waiters, waiter{at: at, ch: ch})
	return ch
}

// Advance moves the clock forward by d and fires every waiter whose deadline
// has been reached, earliest first.
func (s *Simulated) Advance(d time.Duration) {
	s.Set(s.Now().Add(d))
}

// Set moves the clock to t (never backwards) and fires due waiters.
func (s *Simulated) Set(t time.Time) {
	s.mu.Lock()
	if t.After(s.now) {
		s.now = t
	}
	now := s.now
	sort.Slice(s.waiters, func(i, j int) bool { return s.waiters[i].at.Before(s.waiters[j].at) })
	kept := s.waiters[:0]
	var due []waiter
	for _, w := range s.waiters {
		if !w.at.After(now) {
			due = append(due, w)
		} else {
			kept = append(kept, w)
		}
	}
	s.waiters = kept
	s.mu.Unlock()
	for _, w := range due {
		w.ch <- now
	}
}

// Waiters reports how many After calls are still pending; tests use it to
// wait until a goroutine is blocked on the clock before advancing it.
func (s *Simulated) Waiters() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.waiters)
}
