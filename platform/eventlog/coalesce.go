package eventlog

import (
	"context"
	"sync"
	"time"
)

// coalescer shares one call of fn among the callers that arrive before it
// starts: a caller that arrives while a call is in flight waits for the
// next one, so every caller gets an answer read after it arrived.
type coalescer[T any] struct {
	fn func(context.Context) (T, error)

	mu       sync.Mutex
	inFlight bool
	next     *call[T]
}

type call[T any] struct {
	done    chan struct{}
	started time.Time
	val     T
	err     error
}

// do returns the answer of a call that started after do was called, and
// when that call started.
func (c *coalescer[T]) do(ctx context.Context) (T, time.Time, error) {
	c.mu.Lock()
	if c.next == nil {
		c.next = &call[T]{done: make(chan struct{})}
	}
	cl := c.next
	if !c.inFlight {
		c.start()
	}
	c.mu.Unlock()
	select {
	case <-cl.done:
		return cl.val, cl.started, cl.err
	case <-ctx.Done():
		var zero T
		return zero, time.Time{}, ctx.Err()
	}
}

// start runs the waiting call; c.mu is held.
func (c *coalescer[T]) start() {
	cl := c.next
	c.next, c.inFlight = nil, true
	cl.started = time.Now()
	go func() {
		// The call is shared: one caller's cancellation must not fail the others.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cl.val, cl.err = c.fn(ctx)
		cancel()
		c.mu.Lock()
		c.inFlight = false
		if c.next != nil {
			c.start()
		}
		c.mu.Unlock()
		close(cl.done)
	}()
}
