package app_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/testinfra"
	"github.com/herald-health/herald/platform/timers"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/internal/adapters/redisstore"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestRetiredAlertRefusesLateEvents: once a cancelled alert's state has
// expired from Redis (RetainClosed), GetAlert says it is no longer in the
// live store, and a late event for it is dead-lettered (a permanent error)
// instead of being folded into an empty state that would be published over
// the alert's whole state on the state topic.
func TestRetiredAlertRefusesLateEvents(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	clk := clock.NewSimulated(t0)
	rdb := testinfra.NewRedis(t)
	ns := testinfra.UniqueName("acktest")
	store := redisstore.New(rdb, ns).RetainClosed(time.Millisecond, clk.Now)
	require.NoError(t, store.MarkReady(ctx))
	tcfg := timers.DefaultConfig()
	tcfg.Namespace = ns
	tstore, err := timers.New(rdb, clk, tcfg)
	require.NoError(t, err)
	topic := &memTopic{latest: map[string][]byte{}}
	a := app.New(app.Deps{States: store, Recovery: store, Log: newMemLog(clk), Topic: topic,
		Timers: tstore, Lister: store, Clock: clk, CommandWait: 5 * time.Second})

	ev := func(id string, off int64, p func(*eventsv1.Event)) error {
		e := &eventsv1.Event{EventId: id, AlertId: "a1", Tenant: "RZZ", OccurredAt: timestamppb.New(t0)}
		p(e)
		return a.HandleEvent(ctx, e, lifecycle.Position{Partition: 0, Offset: off})
	}
	require.NoError(t, ev("raised", 0, func(e *eventsv1.Event) {
		e.Payload = &eventsv1.Event_AlertRaised{AlertRaised: &eventsv1.AlertRaised{}}
	}))
	require.NoError(t, ev("cancelled", 1, func(e *eventsv1.Event) {
		e.Payload = &eventsv1.Event_AlertCancelled{AlertCancelled: &eventsv1.AlertCancelled{}}
	}))
	published := string(topic.latest["a1"])
	require.Eventually(t, func() bool {
		_, err := a.Get(ctx, "a1")
		return errors.Is(err, fault.ErrNotFound)
	}, time.Minute, 10*time.Millisecond, "the cancelled alert's state expires")

	err = ev("late", 2, func(e *eventsv1.Event) {
		e.Payload = &eventsv1.Event_NotificationDelivered{NotificationDelivered: &eventsv1.NotificationDelivered{NotificationId: "n1"}}
	})
	require.Error(t, err)
	require.True(t, app.IsPermanent(err), "a late event for a retired alert is dead-lettered: %v", err)
	require.Equal(t, published, string(topic.latest["a1"]), "nothing was published over the alert's state")
	_, err = store.Get(ctx, "a1")
	require.True(t, errors.Is(err, app.ErrRetired), "%v", err)
}
