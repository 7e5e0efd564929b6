package app_test

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/eventtype"
	"github.com/herald-health/herald/platform/testinfra"
	"github.com/herald-health/herald/platform/timers"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/internal/adapters/redisstore"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// memLog is an in-memory single-partition event log for app-layer tests:
// Append queues, one goroutine delivers in order to HandleEvent and retries
// failures (as the Kafka consumer does). Component tests use real Kafka.
type memLog struct {
	mu        sync.Mutex
	events    []*eventsv1.Event
	at        []time.Time // simulated time of each append
	delivered int
	busy      bool
	wake      chan struct{}
	clk       clock.Clock
}

func newMemLog(clk clock.Clock) *memLog { return &memLog{wake: make(chan struct{}, 1), clk: clk} }

func (l *memLog) Append(_ context.Context, events ...*eventsv1.Event) error {
	l.mu.Lock()
	for _, e := range events {
		l.events = append(l.events, proto.Clone(e).(*eventsv1.Event))
		l.at = append(l.at, l.clk.Now())
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return nil
}

func (l *memLog) run(ctx context.Context, a *app.App) {
	for ctx.Err() == nil {
		l.mu.Lock()
		if l.delivered == len(l.events) {
			l.busy = false
			l.mu.Unlock()
			select {
			case <-l.wake:
			case <-ctx.Done():
			}
			continue
		}
		l.busy = true
		i := l.delivered
		ev := l.events[i]
		l.mu.Unlock()
		if err := a.HandleEvent(ctx, ev, lifecycle.Position{Partition: 0, Offset: int64(i)}); err != nil {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		l.mu.Lock()
		l.delivered++
		l.mu.Unlock()
	}
}

func (l *memLog) idle() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.busy && l.delivered == len(l.events)
}

// appended returns the types and simulated times of events after the first n.
func (l *memLog) snapshot() ([]*eventsv1.Event, []time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*eventsv1.Event(nil), l.events...), append([]time.Time(nil), l.at...)
}

// memTopic is an in-memory compacted state topic.
type memTopic struct {
	mu     sync.Mutex
	latest map[string][]byte
}

func (m *memTopic) Publish(_ context.Context, st *lifecycle.State) error {
	b, err := proto.Marshal(st)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.latest[st.GetAlertId()] = b
	return nil
}

func (m *memTopic) ReadAll(_ context.Context, fn func(*lifecycle.State) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range m.latest {
		st := &lifecycle.State{}
		if err := proto.Unmarshal(b, st); err != nil {
			return err
		}
		if err := fn(st); err != nil {
			return err
		}
	}
	return nil
}

type harness struct {
	t      *testing.T
	ctx    context.Context
	clk    *clock.Simulated
	rdb    *redis.Client
	store  *redisstore.Store
	timers *timers.Store
	log    *memLog
	app    *app.App
	t0     time.Time
	cancel context.CancelFunc
	done   sync.WaitGroup
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	t0 := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	h := &harness{t: t, clk: clock.NewSimulated(t0), rdb: testinfra.NewRedis(t), t0: t0}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	ns := testinfra.UniqueName("acktest")
	h.store = redisstore.New(h.rdb, ns)
	cfg := timers.DefaultConfig()
	cfg.Namespace = ns
	var err error
	h.timers, err = timers.New(h.rdb, h.clk, cfg)
	require.NoError(t, err)
	h.log = newMemLog(h.clk)
	h.app = app.New(app.Deps{
		States: h.store, Recovery: h.store, Log: h.log, Topic: &memTopic{latest: map[string][]byte{}},
		Timers: h.timers, Lister: h.store, Clock: h.clk, CommandWait: 5 * time.Second,
	})
	poller, err := timers.NewPoller(h.timers, timers.PollerConfig{
		MaxSleep: time.Minute, EpochEvery: time.Second, RetryMin: time.Second, RetryMax: time.Minute, Lookahead: -1,
		OnEpochLost: func(ctx context.Context) error { return h.app.Recover(ctx, "test") },
	})
	require.NoError(t, err)
	h.done.Go(func() { h.log.run(h.ctx, h.app) })
	h.done.Go(func() { _ = poller.Run(h.ctx, h.app.FireTimer) })
	h.done.Go(func() { _ = h.app.RunRecovery(h.ctx, "test", 50*time.Millisecond) })
	t.Cleanup(func() { h.cancel(); h.done.Wait() })
	// The first epoch check finds Redis empty: the projection is restored
	// (from nothing) before anything is handled.
	require.Eventually(t, func() bool { ok, _ := h.store.Ready(h.ctx); return ok }, 10*time.Second, 10*time.Millisecond)
	return h
}

// settle waits until the log is drained and no timer is due or leased.
func (h *harness) settle() {
	h.t.Helper()
	stable := 0
	require.Eventually(h.t, func() bool {
		st, err := h.timers.Stats(h.ctx)
		if err != nil {
			return false
		}
		next, ok, err := h.timers.Next(h.ctx)
		if err != nil {
			return false
		}
		quiet := h.log.idle() && st.Leased == 0 && (!ok || next.After(h.clk.Now()))
		if quiet {
			stable++
		} else {
			stable = 0
		}
		return stable >= 3
	}, 20*time.Second, 5*time.Millisecond)
}

// runUntil moves the simulated clock from timer deadline to timer deadline
// up to end, settling after each.
func (h *harness) runUntil(end time.Time) {
	h.t.Helper()
	h.settle()
	for {
		next, ok, err := h.timers.Next(h.ctx)
		require.NoError(h.t, err)
		if !ok || next.After(end) {
			break
		}
		h.clk.Set(next)
		h.settle()
	}
	h.clk.Set(end)
	h.settle()
}

func (h *harness) raiseAndRoute(alertID string, pol *eventsv1.EscalationPolicy) {
	h.t.Helper()
	now := h.clk.Now()
	require.NoError(h.t, h.log.Append(h.ctx,
		&eventsv1.Event{EventId: alertID + "-raised", AlertId: alertID, Tenant: "RZZ", OccurredAt: timestamppb.New(now),
			Payload: &eventsv1.Event_AlertRaised{AlertRaised: &eventsv1.AlertRaised{}}},
		&eventsv1.Event{EventId: alertID + "-routed", AlertId: alertID, Tenant: "RZZ", OccurredAt: timestamppb.New(now),
			Payload: &eventsv1.Event_AlertRouted{AlertRouted: &eventsv1.AlertRouted{
				Category: eventsv1.Category_CATEGORY_CRITICAL,
				Clocks: &eventsv1.Clocks{
					CommunicateBy: timestamppb.New(now.Add(time.Hour)),
					AcknowledgeBy: timestamppb.New(now.Add(2 * time.Hour)),
					ActionBy:      timestamppb.New(now.Add(24 * time.Hour)),
				},
				Policy: pol,
			}}},
	))
	h.settle()
}

// ladder: step 0 (15 min, 1 repeat), step 1 (30 min), step 2 (1 h).
func ladder() *eventsv1.EscalationPolicy {
	st := func(d time.Duration, repeats uint32, i uint32) *eventsv1.EscalationStep {
		return &eventsv1.EscalationStep{Index: i, Timeout: durationpb.New(d), Repeats: repeats, AckMode: eventsv1.AckMode_ACK_MODE_ANY_ONE}
	}
	return &eventsv1.EscalationPolicy{
		Ref:           &eventsv1.PolicyRef{PolicyId: "rzz-critical", Version: "1"},
		Steps:         []*eventsv1.EscalationStep{st(15*time.Minute, 1, 0), st(30*time.Minute, 0, 1), st(time.Hour, 0, 2)},
		FailsafeQueue: "rzz-failsafe",
	}
}

type fired struct {
	Type  string
	After time.Duration
	Extra string
}

// decided lists the events this service appended for alertID (not the
// ones the test appended), with the simulated time since t0.
func (h *harness) decided(alertID string) []fired {
	events, at := h.log.snapshot()
	var out []fired
	for i, e := range events {
		if e.GetAlertId() != alertID || e.GetProducer() == "" {
			continue
		}
		f := fired{Type: eventtype.Of(e), After: at[i].Sub(h.t0)}
		switch p := e.GetPayload().(type) {
		case *eventsv1.Event_AlertEscalated:
			f.Extra = p.AlertEscalated.GetReason().String()
		case *eventsv1.Event_SlaBreached:
			f.Extra = p.SlaBreached.GetClock().String()
		}
		out = append(out, f)
	}
	// Timers due at the same instant fire concurrently: order by time, then type.
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].After != out[j].After {
			return out[i].After < out[j].After
		}
		return out[i].Type+out[i].Extra < out[j].Type+out[j].Extra
	})
	return out
}

func (h *harness) state(alertID string) *lifecycle.State {
	h.t.Helper()
	st, err := h.app.Get(h.ctx, alertID)
	require.NoError(h.t, err)
	return st
}
