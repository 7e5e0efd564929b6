package app_test

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/services/acknowledgement/internal/app"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
)

// A watcher waits out a failed subscription: ready comes with the retry
// that succeeded, and changes flow from then on.
func TestHubRetriesAFailedSubscription(t *testing.T) {
	h := app.NewHub()
	var attempts atomic.Int32
	subscribe := func(ctx context.Context, _ func(*lifecycle.State), ready func()) error {
		if attempts.Add(1) == 1 {
			return errors.New("redis is down")
		}
		ready()
		<-ctx.Done()
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Feed(ctx, subscribe, 20*time.Millisecond, slog.New(slog.DiscardHandler)) }()

	ch, ready, stop := h.Watch("RZZ")
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("the watcher was never ready")
	}
	require.EqualValues(t, 2, attempts.Load(), "ready with the retry after the failed subscription")
	h.Broadcast(&lifecycle.State{AlertId: "other", Tenant: "RXX"})
	h.Broadcast(&lifecycle.State{AlertId: "mine", Tenant: "RZZ"})
	require.Equal(t, "mine", (<-ch).GetAlertId())

	stop()
	cancel()
	require.NoError(t, <-done)
}
