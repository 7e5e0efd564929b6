package kafkalog_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/rules/internal/adapters/kafkalog"
)

func TestReadRangeOfAPartition(t *testing.T) {
	ctx := context.Background()
	cfg := eventlog.DefaultConfig()
	cfg.Brokers = testinfra.KafkaBrokers(t)
	cfg.EventsTopic = testinfra.NewTopic(t, "rules-range", 1)
	w := eventlog.NewWriter(cfg, "test", telemetry.Nop("test"))
	defer func() { _ = w.Close() }()
	var events []*eventsv1.Event
	for _, id := range []string{"e0", "e1", "e2", "e3"} {
		events = append(events, &eventsv1.Event{EventId: id, AlertId: "a", Tenant: "RZZ", OccurredAt: timestamppb.New(time.Now()),
			Payload: &eventsv1.Event_AlertCancelled{AlertCancelled: &eventsv1.AlertCancelled{}}})
	}
	require.NoError(t, w.Append(ctx, events...))

	r, closeIdle := kafkalog.New(cfg, cfg.EventsTopic)
	defer closeIdle()
	var got []string
	var offsets []int64
	require.NoError(t, r.ReadRange(ctx, 0, 1, 3, func(ev *eventsv1.Event, off int64) {
		got = append(got, ev.GetEventId())
		offsets = append(offsets, off)
	}))
	require.Equal(t, []string{"e1", "e2"}, got)
	require.Equal(t, []int64{1, 2}, offsets)

	// A range past the end stops at the end.
	got = nil
	require.NoError(t, r.ReadRange(ctx, 0, 3, 10, func(ev *eventsv1.Event, _ int64) { got = append(got, ev.GetEventId()) }))
	require.Equal(t, []string{"e3"}, got)
}
