package app

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
)

// Hub fans changed states out to the watchers of this replica. Feed fills
// it from the store's changes channel (so changes applied on any replica
// reach watchers on every replica), and only while it has watchers: every
// replica subscribed to every change would cost Redis a message per change
// and replica, and each replica a read and a decode, with nobody watching.
// A watcher that does not keep up loses changes rather than slowing the
// others down (it may re-read with GetAlert).
type Hub struct {
	mu     sync.Mutex
	next   int
	subs   map[int]*watcher
	demand chan struct{} // a watcher arrived while there were none
	// live is closed once the current subscription delivers changes; it is
	// replaced when that subscription ends.
	live chan struct{}
	stop context.CancelFunc // ends the current subscription
}

type watcher struct {
	tenant string
	ch     chan *lifecycle.State
}

// NewHub returns an empty hub.
func NewHub() *Hub {
	return &Hub{subs: map[int]*watcher{}, demand: make(chan struct{}, 1), live: make(chan struct{})}
}

// Watch registers a watcher of tenant ("" for all); cancel unregisters it.
// ready is closed once changes flow to the hub: every change stored after
// that reaches ch (unless ch is full).
func (h *Hub) Watch(tenant string) (ch <-chan *lifecycle.State, ready <-chan struct{}, cancel func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	id := h.next
	h.next++
	w := &watcher{tenant: tenant, ch: make(chan *lifecycle.State, 256)}
	h.subs[id] = w
	if len(h.subs) == 1 {
		select {
		case h.demand <- struct{}{}:
		default:
		}
	}
	return w.ch, h.live, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[id]; !ok {
			return
		}
		delete(h.subs, id)
		close(w.ch)
		if len(h.subs) == 0 && h.stop != nil {
			h.endLocked()
		}
	}
}

// endLocked ends the current subscription; watchers that arrive from now
// on wait for the next one.
func (h *Hub) endLocked() {
	h.stop()
	h.stop = nil
	h.live = make(chan struct{})
}

// Broadcast hands st to every matching watcher without blocking.
func (h *Hub) Broadcast(st *lifecycle.State) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.subs {
		if w.tenant != "" && w.tenant != st.GetTenant() {
			continue
		}
		select {
		case w.ch <- st:
		default:
		}
	}
}

// Subscribe delivers the store's changes to fn until ctx ends, calling
// ready once they flow. An error means the subscription could not be made
// or was lost.
type Subscribe func(ctx context.Context, fn func(*lifecycle.State), ready func()) error

// Feed runs until ctx ends: while the hub has watchers it keeps a
// subscription to the store's changes (subscribe), and it drops the
// subscription when the last watcher leaves. A failed subscription is
// tried again after retry.
func (h *Hub) Feed(ctx context.Context, subscribe Subscribe, retry time.Duration, log *slog.Logger) error {
	for {
		h.mu.Lock()
		for len(h.subs) == 0 {
			h.mu.Unlock()
			select {
			case <-ctx.Done():
				return nil
			case <-h.demand:
			}
			h.mu.Lock()
		}
		sctx, stop := context.WithCancel(ctx)
		h.stop = stop
		live := h.live
		h.mu.Unlock()

		var once sync.Once
		err := subscribe(sctx, h.Broadcast, func() { once.Do(func() { close(live) }) })

		stop()
		h.mu.Lock()
		if h.live == live { // not ended by the last watcher leaving
			h.stop = nil
			select {
			case <-live: // it had delivered: later watchers wait for the next
				h.live = make(chan struct{})
			default: // it never did: the watchers still wait for this ready
			}
		}
		h.mu.Unlock()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			log.Warn("alert changes for watchers: subscription failed; retrying", "retry_in", retry, "error", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(retry):
			}
		}
	}
}
