package acknowledgement_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/eventtype"
	"github.com/herald-health/herald/platform/timers"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The tests in this file inject, against the real Kafka and Redis, the
// faults that lost escalations in issue #17's multi-replica run, each at the
// line it hits: the handler dies between storing an alert's state and
// arming its timer.

// isRouting reports whether st is the state right after AlertRouted (the
// state whose timer the fault hits).
func isRouting(st *lifecycle.State, id string) bool {
	return st.GetAlertId() == id && st.GetState() == lifecycle.Routed
}

// TestRedisErrorOnArmIsRearmedOnRedelivery fails the arm of an alert's
// first timer once, after its state was stored (as a Redis error would).
// The consumer retries the event; the store already reflects it, and the
// redelivery must still arm the timer the stored state needs, or the alert
// never escalates.
func TestRedisErrorOnArmIsRearmedOnRedelivery(t *testing.T) {
	e := newEnv(t)
	id := newAlertID("arm-fails")
	var failed atomic.Bool
	in := e.start("r1", app.Hooks{BeforeArm: func(_ context.Context, st *lifecycle.State) error {
		if isRouting(st, id) && failed.CompareAndSwap(false, true) {
			return errors.New("injected: redis connection reset")
		}
		return nil
	}})
	e.append(context.Background(), raisedEvent(id), routedEvent(id, nil, time.Second, time.Hour))
	require.Eventually(t, func() bool {
		st, err := in.client.GetAlert(context.Background(), &ackv1.GetAlertRequest{AlertId: id})
		return err == nil && st.GetState().GetRepeat() == 1
	}, 60*time.Second, 20*time.Millisecond, "the alert never escalated: its timer was not armed again")
	require.True(t, failed.Load())
	got, _, kinds := decided(e.events(id))
	require.Equal(t, "AlertEscalated ESCALATION_REASON_REPEAT 0/1", kindsOf(got, kinds)[0])
}

// TestKilledBetweenStoreAndArmIsRearmedByTheNextOwner "kills" a replica
// between storing the routed state and arming its timer (its context is
// cancelled there, as a rebalance or SIGKILL would end it): the record is
// not committed, the next replica gets it again and must arm the timer.
func TestKilledBetweenStoreAndArmIsRearmedByTheNextOwner(t *testing.T) {
	e := newEnv(t)
	id := newAlertID("killed-before-arm")
	var killed atomic.Bool
	var victim *instance
	ready := make(chan struct{})
	victim = e.start("victim", app.Hooks{BeforeArm: func(ctx context.Context, st *lifecycle.State) error {
		<-ready
		if isRouting(st, id) && killed.CompareAndSwap(false, true) {
			victim.cancel()
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}})
	close(ready)
	e.append(context.Background(), raisedEvent(id), routedEvent(id, nil, time.Second, time.Hour))
	require.Eventually(t, killed.Load, 60*time.Second, 10*time.Millisecond)
	victim.stop()
	require.Contains(t, e.logs.String(), "handler stopped before it finished")

	survivor := e.start("survivor", app.Hooks{})
	require.Eventually(t, func() bool {
		st, err := survivor.client.GetAlert(context.Background(), &ackv1.GetAlertRequest{AlertId: id})
		return err == nil && st.GetState().GetRepeat() == 1
	}, 60*time.Second, 20*time.Millisecond, "the alert never escalated: nobody armed its timer")
	// The repeat timer runs on the real clock (1 s): on a loaded machine more
	// escalations may follow before the log is read. The first decision is
	// the repeat the survivor owed, recorded once.
	got, records, kinds := decided(e.events(id))
	require.NotEmpty(t, got)
	require.Equal(t, "AlertEscalated ESCALATION_REASON_REPEAT 0/1", kindsOf(got, kinds)[0])
	require.Equal(t, 1, records[got[0]])
}

// timerStore opens the service's timer store (its namespace) on the test's
// Redis, to look at what is armed.
func (e *env) timerStore(clk clock.Clock) *timers.Store {
	e.t.Helper()
	cfg := timers.DefaultConfig()
	cfg.Namespace = e.cfg.RedisNamespace
	ts, err := timers.New(e.rdb, clk, cfg)
	require.NoError(e.t, err)
	return ts
}

// TestTimerDecidesOnTheLogNotOnAStalledProjection stalls the projection of
// one alert (its partition's handler is held before it applies the
// AlertAcknowledged, as when the replica that owns the partition died and
// the group has not moved it yet), acknowledges the alert, then lets its
// step timer fire. The acknowledgement is in the log before the timer
// decides: there must be no AlertEscalated. The Acknowledge command itself
// answers from the log, without waiting out its command wait.
func TestTimerDecidesOnTheLogNotOnAStalledProjection(t *testing.T) {
	e := newEnv(t)
	clk := clock.NewSimulated(time.Now())
	e.clock = clk
	e.cfg.CommandWait = time.Minute // a command that waited for the stalled projection would hang the test
	id := newAlertID("stalled")
	release := make(chan struct{})
	var held atomic.Bool
	in := e.start("r1", app.Hooks{Received: func(ev *eventsv1.Event) {
		if _, ok := ev.GetPayload().(*eventsv1.Event_AlertAcknowledged); ok && ev.GetAlertId() == id {
			held.Store(true)
			<-release
		}
	}})
	var once sync.Once
	unstall := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unstall)

	e.append(context.Background(), raisedEvent(id), routedEvent(id, nil, 15*time.Minute, time.Hour))
	e.waitState(in.client, id, ackv1.State_STATE_ROUTED, 60*time.Second)
	ack, err := in.client.Acknowledge(context.Background(), &ackv1.AcknowledgeRequest{AlertId: id, RequestId: "ack-" + id}, e.as("dr-stalled"))
	require.NoError(t, err)
	require.Equal(t, ackv1.State_STATE_ACKNOWLEDGED, ack.GetState().GetState())
	require.True(t, held.Load(), "the projection applied the acknowledgement: nothing was stalled")

	// The step timer comes due while the projection still says ROUTED.
	ts := e.timerStore(clk)
	clk.Advance(16 * time.Minute)
	require.Eventually(t, func() bool {
		st, err := ts.Stats(context.Background())
		return err == nil && st.Due == 0 && st.Leased == 0
	}, 60*time.Second, 20*time.Millisecond, "the step timer was never decided")
	got, _, kinds := decided(e.events(id))
	require.Empty(t, kindsOf(got, kinds), "decided on a projection behind the log: escalated an acknowledged alert")

	unstall()
	e.waitState(in.client, id, ackv1.State_STATE_ACKNOWLEDGED, 60*time.Second)
}

// TestAcknowledgeDecidesOnTheLogWhenTheProjectionLags holds the projection
// before it applies an alert's AlertRouted (a lagging consumer under load)
// and acknowledges the alert: the command decides on the alert as the log
// has it (routed, so acknowledgeable) instead of refusing it as "raised"
// (the acknowledge link's HTTP 409 of issue #17).
func TestAcknowledgeDecidesOnTheLogWhenTheProjectionLags(t *testing.T) {
	e := newEnv(t)
	e.cfg.CommandWait = time.Minute
	id := newAlertID("lagging")
	release := make(chan struct{})
	var held atomic.Bool
	in := e.start("r1", app.Hooks{Received: func(ev *eventsv1.Event) {
		if _, ok := ev.GetPayload().(*eventsv1.Event_AlertRouted); ok && ev.GetAlertId() == id {
			held.Store(true)
			<-release
		}
	}})
	var once sync.Once
	unstall := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unstall)

	e.append(context.Background(), raisedEvent(id), routedEvent(id, nil, 15*time.Minute, time.Hour))
	require.Eventually(t, held.Load, 60*time.Second, 10*time.Millisecond)
	ack, err := in.client.Acknowledge(context.Background(), &ackv1.AcknowledgeRequest{AlertId: id, RequestId: "ack-" + id}, e.as("dr-lagging"))
	require.NoError(t, err, "refused on a projection behind the log")
	require.Equal(t, ackv1.State_STATE_ACKNOWLEDGED, ack.GetState().GetState())
	unstall()
	e.waitState(in.client, id, ackv1.State_STATE_ACKNOWLEDGED, 60*time.Second)
}

// TestWatchdogRepairsATimerKeyDeletedByHand deletes one alert's timer from
// the real Redis by hand (every trace of it, as an operator's mistake
// would), then moves the injected clock past the alert's step timeout and
// the watchdog's bound: the watchdog, which reads only the projection
// store and the log, finds the alert overdue, appends TimerRepaired, logs
// it and re-arms the timer, and the escalation the deadline owes follows.
// Another alert, whose timer is intact, is left alone.
func TestWatchdogRepairsATimerKeyDeletedByHand(t *testing.T) {
	e := newEnv(t)
	clk := clock.NewSimulated(time.Now())
	e.clock = clk
	e.cfg.WatchdogEvery = 10 * time.Second
	e.cfg.WatchdogBound = time.Minute
	lost, intact := newAlertID("watchdog-lost"), newAlertID("watchdog-intact")
	in := e.start("r1", app.Hooks{})
	e.append(context.Background(), raisedEvent(lost), routedEvent(lost, nil, 15*time.Minute, time.Hour),
		raisedEvent(intact), routedEvent(intact, nil, 30*time.Minute, time.Hour))
	e.waitState(in.client, lost, ackv1.State_STATE_ROUTED, 60*time.Second)
	e.waitState(in.client, intact, ackv1.State_STATE_ROUTED, 60*time.Second)

	// Delete the lost alert's timer by hand: its entry in every key of the
	// timer store.
	ctx := context.Background()
	tag := "{" + e.cfg.RedisNamespace + ":timers:0}"
	timerID := app.AlertTimerID(lost)
	require.Eventually(t, func() bool {
		n, err := e.rdb.ZScore(ctx, tag+":due", timerID).Result()
		return err == nil && n > 0
	}, 60*time.Second, 20*time.Millisecond, "the lost alert's timer was never armed")
	for _, k := range []string{":due", ":leased"} {
		require.NoError(t, e.rdb.ZRem(ctx, tag+k, timerID).Err())
	}
	for _, k := range []string{":payload", ":dueat", ":token", ":attempts"} {
		require.NoError(t, e.rdb.HDel(ctx, tag+k, timerID).Err())
	}

	// Past the step timeout, but within the bound: nothing yet.
	clk.Advance(15*time.Minute + 30*time.Second)
	// Past the bound: the next sweep repairs it.
	escalated := func() bool {
		clk.Advance(10 * time.Second)
		st, err := in.client.GetAlert(ctx, &ackv1.GetAlertRequest{AlertId: lost})
		return err == nil && st.GetState().GetRepeat() == 1
	}
	for deadline := time.Now().Add(3 * time.Minute); !escalated(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			var seen []string
			for _, ev := range e.events(lost) {
				seen = append(seen, eventtype.Of(ev))
			}
			t.Fatalf("the alert whose timer was deleted never escalated; its events: %v; watchdog lines: %q",
				seen, grepLines(e.logs.String(), "watchdog"))
		}
	}

	events := e.events(lost)
	var repairs int
	for _, ev := range events {
		if r := ev.GetTimerRepaired(); r != nil {
			repairs++
			require.Equal(t, []string{"step"}, r.GetTimers())
			require.Greater(t, r.GetOverdueBy().AsDuration(), time.Minute)
		}
	}
	require.Equal(t, 1, repairs, "one TimerRepaired for the lost deadline")
	got, _, kinds := decided(events)
	require.Equal(t, "AlertEscalated ESCALATION_REASON_REPEAT 0/1", kinds[got[0]])
	for _, ev := range e.events(intact) {
		require.Nil(t, ev.GetTimerRepaired(), "the alert whose timer was intact was repaired")
	}
	require.Contains(t, e.logs.String(), "lost SLA timer re-armed")
	requireNoPatientData(t, e.logs.String())
}

// TestClockTimersAfterFailsafeAreArmedWhenTheArmFailed fails, once, the arm
// that follows FailsafeQueued (the alert then needs only its clock timers:
// the case #17 found unarmed after a rebalance). The redelivered event must
// arm the acknowledge clock's timer.
func TestClockTimersAfterFailsafeAreArmedWhenTheArmFailed(t *testing.T) {
	e := newEnv(t)
	id := newAlertID("failsafe-arm-fails")
	var failed atomic.Bool
	in := e.start("r1", app.Hooks{BeforeArm: func(_ context.Context, st *lifecycle.State) error {
		if st.GetAlertId() == id && st.GetState() == lifecycle.Failsafe && failed.CompareAndSwap(false, true) {
			return errors.New("injected: redis connection reset")
		}
		return nil
	}})
	ackBy := time.Now().Add(time.Hour)
	e.append(context.Background(), raisedEvent(id),
		routedEvent(id, &eventsv1.Clocks{AcknowledgeBy: timestamppb.New(ackBy)}, time.Second))
	e.waitState(in.client, id, ackv1.State_STATE_FAILSAFE, 60*time.Second)
	require.Eventually(t, failed.Load, 30*time.Second, 10*time.Millisecond)
	want := ackBy.Truncate(time.Millisecond) // the store keeps whole milliseconds, rounded up
	if want.Before(ackBy) {
		want = want.Add(time.Millisecond)
	}
	tag := "{" + e.cfg.RedisNamespace + ":timers:0}"
	require.Eventually(t, func() bool {
		due, err := e.rdb.ZScore(context.Background(), tag+":due", app.AlertTimerID(id)).Result()
		return err == nil && int64(due) == want.UnixMilli()
	}, 60*time.Second, 20*time.Millisecond, "the acknowledge clock's timer was never armed after the fail-safe queue")
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}
