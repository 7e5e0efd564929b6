package app_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/logging"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/rules/internal/app"
	"github.com/herald-health/herald/services/rules/internal/domain/routing"
)

// memLog is an in-memory Appender (the port, not Kafka).
type memLog struct {
	mu     sync.Mutex
	events []*eventsv1.Event
	err    error
}

func (m *memLog) Append(_ context.Context, events ...*eventsv1.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	m.events = append(m.events, events...)
	return nil
}

func newRouter(t *testing.T, out app.Appender) (*app.Router, *app.Registry) {
	t.Helper()
	reg := app.NewRegistry(time.Now)
	require.NoError(t, app.NewLoader(os.DirFS(demoDir(t)), reg, logging.Discard(), nil).Load(context.Background()))
	now := func() time.Time { return time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC) }
	r, err := app.NewRouter(func() routing.Bundles { return reg.Snapshot() }, out, now, logging.Discard(), tracenoop.NewTracerProvider().Tracer(""), metricnoop.NewMeterProvider().Meter(""))
	require.NoError(t, err)
	return r, reg
}

func raisedEv(alertID, eventID, tenant string, flag eventsv1.Category) *eventsv1.Event {
	return &eventsv1.Event{EventId: eventID, AlertId: alertID, Tenant: tenant, OccurredAt: timestamppb.New(time.Date(2026, 2, 1, 11, 0, 0, 0, time.UTC)),
		Payload: &eventsv1.Event_AlertRaised{AlertRaised: &eventsv1.AlertRaised{Details: &eventsv1.AlertDetails{SourceFlag: &eventsv1.SourceFlag{Category: flag}}}}}
}

func TestRouterAppendsOneRoutingPerCause(t *testing.T) {
	ctx := context.Background()
	out := &memLog{}
	r, _ := newRouter(t, out)
	ev := raisedEv("a1", "e1", "RZZ", eventsv1.Category_CATEGORY_CRITICAL)

	// Given a cause handled twice.
	require.NoError(t, r.Handle(ctx, ev))
	require.NoError(t, r.Handle(ctx, ev))
	// Then one AlertRouted, stamped with the decision instant, escalating from the cause's.
	require.Len(t, out.events, 1)
	got := out.events[0]
	require.Equal(t, eventlog.ID("a1", "routed", "e1"), got.GetEventId())
	require.Equal(t, time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC), got.GetOccurredAt().AsTime())
	require.Equal(t, "e1", got.GetCausationId())
	require.Equal(t, uint32(1), got.GetSchemaVersion())

	// Given a fresh router that rebuilt its projection from the log.
	out2 := &memLog{}
	r2, _ := newRouter(t, out2)
	r2.Observe(got)
	require.NoError(t, r2.Handle(ctx, ev))
	require.Empty(t, out2.events)

	// And an AlertRouted seen on the log (another replica's) counts too.
	require.NoError(t, r2.Handle(ctx, got))
	require.Equal(t, 1, r2.Alerts())
	// A closed alert is forgotten.
	r2.Observe(&eventsv1.Event{AlertId: "a1", Payload: &eventsv1.Event_AlertClosed{AlertClosed: &eventsv1.AlertClosed{}}})
	require.Equal(t, 0, r2.Alerts())
}

func TestRouterErrors(t *testing.T) {
	ctx := context.Background()
	out := &memLog{}
	r, _ := newRouter(t, out)

	// No bundle for the tenant: permanent.
	err := r.Handle(ctx, raisedEv("a2", "e2", "RXX", eventsv1.Category_CATEGORY_CRITICAL))
	require.True(t, errors.Is(err, app.ErrUnroutable), "got %v", err)
	// No alert id: permanent.
	err = r.Handle(ctx, raisedEv("", "e3", "RZZ", eventsv1.Category_CATEGORY_CRITICAL))
	require.True(t, errors.Is(err, app.ErrUnroutable), "got %v", err)
	// The log is down: not permanent, and nothing is remembered as done.
	out.err = errors.New("broker unreachable")
	err = r.Handle(ctx, raisedEv("a4", "e4", "RZZ", eventsv1.Category_CATEGORY_CRITICAL))
	require.Error(t, err)
	require.False(t, errors.Is(err, app.ErrUnroutable))
	out.err = nil
	require.NoError(t, r.Handle(ctx, raisedEv("a4", "e4", "RZZ", eventsv1.Category_CATEGORY_CRITICAL)))
	require.Len(t, out.events, 1)
	// Events that need no routing are ignored.
	require.NoError(t, r.Handle(ctx, &eventsv1.Event{AlertId: "a5", Payload: &eventsv1.Event_AlertCancelled{AlertCancelled: &eventsv1.AlertCancelled{}}}))
	require.Len(t, out.events, 1)
}

func TestRouterAmendmentUsesTheCategoryInForce(t *testing.T) {
	ctx := context.Background()
	out := &memLog{}
	r, _ := newRouter(t, out)
	require.NoError(t, r.Handle(ctx, raisedEv("a6", "e6", "RZZ", eventsv1.Category_CATEGORY_CRITICAL)))
	amend := &eventsv1.Event{EventId: "e7", AlertId: "a6", Tenant: "RZZ", OccurredAt: timestamppb.Now(),
		Payload: &eventsv1.Event_AlertAmended{AlertAmended: &eventsv1.AlertAmended{Details: &eventsv1.AlertDetails{SourceFlag: &eventsv1.SourceFlag{Category: eventsv1.Category_CATEGORY_SIGNIFICANT_UNEXPECTED}}}}}
	require.NoError(t, r.Handle(ctx, amend))
	require.Len(t, out.events, 2)
	require.Equal(t, eventsv1.Category_CATEGORY_CRITICAL, out.events[1].GetAlertRouted().GetCategory())
	require.Equal(t, eventsv1.Category_CATEGORY_CRITICAL, out.events[1].GetAlertRouted().GetPreviousCategory())
}

func TestRouterRepeatReportOfARoutedFindingRoutesOnlyAnUpgrade(t *testing.T) {
	ctx := context.Background()
	out := &memLog{}
	r, _ := newRouter(t, out)
	// Given a preliminary report flagged URGENT, routed.
	require.NoError(t, r.Handle(ctx, raisedEv("a8", "e8-prelim", "RZZ", eventsv1.Category_CATEGORY_URGENT)))
	require.Len(t, out.events, 1)
	// When the same finding arrives again with the same or a lower flag
	// (another channel, a resend under a new message id), nothing is routed.
	require.NoError(t, r.Handle(ctx, raisedEv("a8", "e8-fhir", "RZZ", eventsv1.Category_CATEGORY_URGENT)))
	require.NoError(t, r.Handle(ctx, raisedEv("a8", "e8-lower", "RZZ", eventsv1.Category_CATEGORY_SIGNIFICANT_UNEXPECTED)))
	require.Len(t, out.events, 1, "a repeat report that does not upgrade must not re-route the alert")
	// When the final report flags it CRITICAL, the alert is upgraded.
	require.NoError(t, r.Handle(ctx, raisedEv("a8", "e8-final", "RZZ", eventsv1.Category_CATEGORY_CRITICAL)))
	require.Len(t, out.events, 2)
	up := out.events[1].GetAlertRouted()
	require.Equal(t, eventsv1.Category_CATEGORY_CRITICAL, up.GetCategory())
	require.Equal(t, eventsv1.Category_CATEGORY_URGENT, up.GetPreviousCategory())
	require.Equal(t, eventlog.ID("a8", "routed", "e8-final"), out.events[1].GetEventId())
}

// memRange is an in-memory partition (the RangeReader port).
type memRange struct {
	events []*eventsv1.Event // offset = index
	reads  [][2]int64
}

func (m *memRange) ReadRange(_ context.Context, _ int, from, to int64, fn func(*eventsv1.Event, int64)) error {
	m.reads = append(m.reads, [2]int64{from, to})
	for off := from; off < to && off < int64(len(m.events)); off++ {
		fn(m.events[off], off)
	}
	return nil
}

func TestRouterCatchesUpOnEventsAnotherReplicaConsumed(t *testing.T) {
	ctx := context.Background()
	// Given a partition where another replica routed a raised alert: offsets
	// 0 (raised), 1 (routed), and this replica rebuilt up to offset 0 only.
	other := &memLog{}
	a, _ := newRouter(t, other)
	raised := raisedEv("a8", "e8", "RZZ", eventsv1.Category_CATEGORY_CRITICAL)
	require.NoError(t, a.Handle(ctx, raised))
	part := &memRange{events: []*eventsv1.Event{raised, other.events[0]}}

	out := &memLog{}
	b, _ := newRouter(t, out)
	b.ObserveAt(raised, 0, 0)
	b.TrackPartitions(part)

	// When a rebalance hands this replica the partition and the raised alert
	// is delivered again at offset 2 (a producer retry).
	require.NoError(t, b.HandleAt(ctx, raised, 0, 2))

	// Then it read offset 1 first, and did not route the alert again.
	require.Equal(t, [][2]int64{{1, 2}}, part.reads)
	require.Empty(t, out.events)
	// And consecutive deliveries need no catch-up.
	require.NoError(t, b.HandleAt(ctx, raisedEv("a9", "e9", "RZZ", eventsv1.Category_CATEGORY_URGENT), 0, 3))
	require.Len(t, part.reads, 1)
	require.Len(t, out.events, 1)
	// A partition never seen is read from its start.
	require.NoError(t, b.HandleAt(ctx, raisedEv("a10", "e10", "RZZ", eventsv1.Category_CATEGORY_URGENT), 1, 2))
	require.Equal(t, [2]int64{0, 2}, part.reads[1])
}

func amendedEv(alertID, eventID, referrer string, flag eventsv1.Category) *eventsv1.Event {
	return &eventsv1.Event{EventId: eventID, AlertId: alertID, Tenant: "RZZ", OccurredAt: timestamppb.New(time.Date(2026, 2, 1, 11, 30, 0, 0, time.UTC)),
		Payload: &eventsv1.Event_AlertAmended{AlertAmended: &eventsv1.AlertAmended{Details: &eventsv1.AlertDetails{
			SourceFlag: &eventsv1.SourceFlag{Category: flag}, Referrer: &eventsv1.Clinician{Id: referrer}}}}}
}

func TestRouterAmendmentThatChangesNothingClinicallyIsNotReRouted(t *testing.T) {
	ctx := context.Background()
	out := &memLog{}
	r, _ := newRouter(t, out)
	raised := raisedEv("a9", "e9", "RZZ", eventsv1.Category_CATEGORY_URGENT)
	raised.GetAlertRaised().Details.Referrer = &eventsv1.Clinician{Id: "C1"}
	require.NoError(t, r.Handle(ctx, raised))
	require.Len(t, out.events, 1)
	// Same category, same referrer (a typo corrected): not re-routed.
	require.NoError(t, r.Handle(ctx, amendedEv("a9", "e9-typo", "C1", eventsv1.Category_CATEGORY_URGENT)))
	require.Len(t, out.events, 1, "an amendment that changes nothing clinically must not restart the ladder")
	// Another referrer: re-routed, so the new referrer is told.
	require.NoError(t, r.Handle(ctx, amendedEv("a9", "e9-ref", "C2", eventsv1.Category_CATEGORY_URGENT)))
	require.Len(t, out.events, 2)
	// A downgrade is refused and recorded (re-routed with the reason).
	require.NoError(t, r.Handle(ctx, amendedEv("a9", "e9-down", "C2", eventsv1.Category_CATEGORY_SIGNIFICANT_UNEXPECTED)))
	require.Len(t, out.events, 3)
	require.Contains(t, out.events[2].GetAlertRouted().GetClassificationReason(), "kept URGENT")
	// An upgrade re-routes at step 0.
	require.NoError(t, r.Handle(ctx, amendedEv("a9", "e9-up", "C2", eventsv1.Category_CATEGORY_CRITICAL)))
	require.Len(t, out.events, 4)
	require.Equal(t, eventsv1.Category_CATEGORY_CRITICAL, out.events[3].GetAlertRouted().GetCategory())
}

func TestRouterRoutesANewReportAfterACancellation(t *testing.T) {
	ctx := context.Background()
	out := &memLog{}
	r, _ := newRouter(t, out)
	require.NoError(t, r.Handle(ctx, raisedEv("a10", "e10", "RZZ", eventsv1.Category_CATEGORY_CRITICAL)))
	require.NoError(t, r.Handle(ctx, &eventsv1.Event{EventId: "e10-x", AlertId: "a10", Payload: &eventsv1.Event_AlertCancelled{AlertCancelled: &eventsv1.AlertCancelled{}}}))
	// The same finding reported again after the cancel is a new obligation,
	// routed though its category does not upgrade the old one.
	require.NoError(t, r.Handle(ctx, raisedEv("a10", "e10-again", "RZZ", eventsv1.Category_CATEGORY_CRITICAL)))
	require.Len(t, out.events, 2)
	require.Equal(t, eventlog.ID("a10", "routed", "e10-again"), out.events[1].GetEventId())
}

// flakyLog is an Appender that counts its appends and fails the one
// numbered failAt (1-based; a process dying mid-run never sees its append
// acknowledged).
type flakyLog struct {
	memLog
	calls  int
	failAt int
}

func (f *flakyLog) Append(ctx context.Context, events ...*eventsv1.Event) error {
	f.calls++
	if f.calls == f.failAt {
		return errors.New("died mid-run")
	}
	return f.memLog.Append(ctx, events...)
}

func routedIDs(events []*eventsv1.Event) []string {
	var ids []string
	for _, ev := range events {
		ids = append(ids, ev.GetEventId()+"/"+ev.GetAlertRouted().GetCategory().String())
	}
	return ids
}

func TestRouterRunAppendsItsRoutingsTogetherAndConvergesAfterDyingMidRun(t *testing.T) {
	ctx := context.Background()
	run := []*eventsv1.Event{
		raisedEv("a1", "e1", "RZZ", eventsv1.Category_CATEGORY_URGENT),
		raisedEv("a2", "e2", "RZZ", eventsv1.Category_CATEGORY_URGENT),
		amendedEv("a1", "e3", "7100009", eventsv1.Category_CATEGORY_CRITICAL),
		raisedEv("a3", "e4", "RZZ", eventsv1.Category_CATEGORY_CRITICAL),
	}
	offsets := []int64{10, 11, 12, 13}

	// The same events handled one at a time: what the run must come to.
	alone := &memLog{}
	ra, _ := newRouter(t, alone)
	for _, ev := range run {
		require.NoError(t, ra.Handle(ctx, ev))
	}
	require.Len(t, alone.events, 4)

	// Given a run whose second append fails (the process dies there).
	out := &flakyLog{failAt: 2}
	r, _ := newRouter(t, out)
	err := r.HandleRunAt(ctx, run, 0, offsets)
	require.Error(t, err)
	// Then the routings went out in appends of several: a1 and a2
	// together, flushed before a1's amendment was decided on a1's routing.
	require.Equal(t, 2, out.calls)
	require.Equal(t, routedIDs(alone.events[:2]), routedIDs(out.events))

	// When the run is redelivered to a replacement that rebuilt its
	// projection from what is durable.
	r2, _ := newRouter(t, &out.memLog)
	for _, ev := range out.events {
		r2.Observe(ev)
	}
	require.NoError(t, r2.HandleRunAt(ctx, run, 0, offsets))
	// Then every cause is routed once, as when handled alone.
	require.Equal(t, routedIDs(alone.events), routedIDs(out.events))

	// And a run handled again changes nothing (idempotent).
	require.NoError(t, r2.HandleRunAt(ctx, run, 0, offsets))
	require.Len(t, out.events, 4)
}
