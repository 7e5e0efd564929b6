package acknowledgement_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/eventtype"
	"github.com/herald-health/herald/platform/testinfra"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestThreeReplicasEscalateOncePerStep runs three replicas in one consumer
// group: every alert climbs its whole ladder to the fail-safe queue with one
// escalation record per step, never two.
func TestThreeReplicasEscalateOncePerStep(t *testing.T) {
	e := newEnv(t)
	r := []*instance{e.start("r1", app.Hooks{}), e.start("r2", app.Hooks{}), e.start("r3", app.Hooks{})}
	const n = 12
	var ids []string
	for i := range n {
		id := newAlertID(fmt.Sprintf("three-%d", i))
		ids = append(ids, id)
		e.append(context.Background(), raisedEvent(id), routedEvent(id, nil, time.Second, time.Second, time.Second))
	}
	for i, id := range ids {
		e.waitState(r[i%3].client, id, ackv1.State_STATE_FAILSAFE, 60*time.Second)
	}
	all := e.allEvents()
	for _, id := range ids {
		got, records, kinds := decided(all[id])
		require.Equal(t, fullLadder, kindsOf(got, kinds), id)
		for eid, c := range records {
			require.Equal(t, 1, c, "alert %s: %s appended %d times", id, kinds[eid], c)
		}
	}
	requireNoPatientData(t, e.logs.String())
}

// TestAcknowledgementRacesTimer makes an acknowledgement and the step
// timer of the same alert race, in both orders, deterministically: for
// half of the alerts the acknowledgement reaches the log while the timer's
// handler holds its decided escalation (hooked before its append), for the
// other half it is sent once the escalation is in the log. Whichever is
// first in the log wins, and the projection is the fold of the log.
func TestAcknowledgementRacesTimer(t *testing.T) {
	e := newEnv(t)
	const n = 6
	type race struct {
		ackFirst  bool
		decided   chan struct{} // the timer decided to escalate (ack first: it waits for acked)
		acked     chan struct{}
		escalated chan struct{} // the escalation is in the log
		once      sync.Once
	}
	races := map[string]*race{}
	var ids []string
	for i := range n {
		id := newAlertID(fmt.Sprintf("race-%d", i))
		ids = append(ids, id)
		races[id] = &race{ackFirst: i%2 == 0, decided: make(chan struct{}), acked: make(chan struct{}), escalated: make(chan struct{})}
	}
	released := make(chan struct{})
	hooks := app.Hooks{
		BeforeAppend: func(_ context.Context, tm lifecycle.Timer, _ []*eventsv1.Event) {
			r := races[tm.AlertID]
			if r == nil || !r.ackFirst {
				return
			}
			first := false
			r.once.Do(func() { first = true; close(r.decided) })
			if first {
				select {
				case <-r.acked:
				case <-released:
				}
			}
		},
		AfterAppend: func(_ context.Context, tm lifecycle.Timer, _ []*eventsv1.Event) {
			if r := races[tm.AlertID]; r != nil && !r.ackFirst {
				r.once.Do(func() { close(r.escalated) })
			}
		},
	}
	r1, r2 := e.start("r1", hooks), e.start("r2", hooks)
	t.Cleanup(func() { close(released) }) // runs before the replicas stop
	for _, id := range ids {
		e.append(context.Background(), raisedEvent(id), routedOnceEvent(id, time.Second, time.Hour))
	}
	var wg sync.WaitGroup
	for i, id := range ids {
		r := races[id]
		c := []*instance{r1, r2}[i%2].client
		wg.Go(func() {
			wait := r.escalated
			if r.ackFirst {
				wait = r.decided
			}
			select {
			case <-wait:
			case <-time.After(90 * time.Second):
				t.Errorf("alert %s: the step timer never fired", id)
				return
			}
			_, err := c.Acknowledge(context.Background(), &ackv1.AcknowledgeRequest{AlertId: id, RequestId: "ack-" + id}, e.as("dr-"+id[:4]))
			if err != nil {
				t.Errorf("alert %s: acknowledge: %v", id, err)
			}
			if r.ackFirst {
				close(r.acked) // the escalation may be appended now, after the acknowledgement
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, id := range ids {
		r := races[id]
		got := e.waitState(r2.client, id, ackv1.State_STATE_ACKNOWLEDGED, 90*time.Second)
		var order []string
		var events []*eventsv1.Event
		require.Eventually(t, func() bool {
			events, order = e.events(id), nil
			for _, ev := range events {
				switch ev.GetPayload().(type) {
				case *eventsv1.Event_AlertEscalated, *eventsv1.Event_AlertAcknowledged:
					order = append(order, eventtype.Of(ev))
				}
			}
			return len(order) == 2 && len(events) == len(fullState(t, r1, id).GetTimeline())
		}, 90*time.Second, 50*time.Millisecond, "alert %s: the acknowledgement and the escalation in the log and the projection (got %v)", id, order)
		// The projection is the fold of the log, in log order.
		folded := lifecycle.Fold(events...)
		require.Equal(t, folded.GetState(), got.GetState().GetState())
		require.Equal(t, folded.GetStep(), got.GetState().GetStep())
		require.Equal(t, folded.GetRepeat(), got.GetState().GetRepeat())
		escalation := effect(fullState(t, r1, id), "AlertEscalated")
		if r.ackFirst {
			require.Equal(t, []string{"AlertAcknowledged", "AlertEscalated"}, order, "alert %s", id)
			require.Equal(t, uint32(0), got.GetState().GetStep(), "alert %s: the acknowledgement reached the log first: the escalation has no effect", id)
			require.Equal(t, []bool{false}, escalation, "alert %s: the escalation is on the timeline, without effect", id)
		} else {
			require.Equal(t, []string{"AlertEscalated", "AlertAcknowledged"}, order, "alert %s", id)
			require.Equal(t, uint32(1), got.GetState().GetStep(), "alert %s: the escalation reached the log first: it counts", id)
			require.Equal(t, []bool{true}, escalation, "alert %s: the escalation is on the timeline, with effect", id)
		}
	}
}

// effect lists, for each timeline entry of type typ, whether it had an
// effect.
func effect(st *ackv1.GetAlertResponse, typ string) []bool {
	var out []bool
	for _, en := range st.GetTimeline() {
		if en.GetType() == typ {
			out = append(out, !en.GetNoEffect())
		}
	}
	return out
}

func fullState(t *testing.T, in *instance, id string) *ackv1.GetAlertResponse {
	t.Helper()
	r, err := in.client.GetAlert(context.Background(), &ackv1.GetAlertRequest{AlertId: id})
	require.NoError(t, err)
	return r
}

// TestFlushDBMidRun wipes the service's Redis database while alerts are
// climbing their ladders: the projection is restored from the state topic,
// the timers are re-armed, and every alert still escalates, once per step.
func TestFlushDBMidRun(t *testing.T) {
	e := newEnv(t)
	r1, r2 := e.start("r1", app.Hooks{}), e.start("r2", app.Hooks{})
	const n = 10
	var ids []string
	for i := range n {
		id := newAlertID(fmt.Sprintf("flush-%d", i))
		ids = append(ids, id)
		e.append(context.Background(), raisedEvent(id), routedEvent(id, nil, time.Second, 2*time.Second, time.Second))
	}
	// Wait until every alert has escalated at least once. Not for one
	// particular rung: step 0's repeat lasts one second, and on a loaded
	// machine the poll can miss it (the alert is at step 1 by then, or
	// further), which made this wait fail although nothing was wrong.
	for _, id := range ids {
		require.Eventually(t, func() bool {
			st, err := r1.client.GetAlert(context.Background(), &ackv1.GetAlertRequest{AlertId: id})
			return err == nil && (st.GetState().GetRepeat() > 0 || st.GetState().GetStep() > 0 || st.GetState().GetState() == ackv1.State_STATE_FAILSAFE)
		}, 90*time.Second, 20*time.Millisecond, "alert %s: never escalated", id)
	}
	require.NoError(t, e.rdb.FlushDB(context.Background()).Err())
	for i, id := range ids {
		e.waitState([]*instance{r1, r2}[i%2].client, id, ackv1.State_STATE_FAILSAFE, 90*time.Second)
	}
	require.Contains(t, e.logs.String(), "alert projection restored from the state topic")
	all := e.allEvents()
	for _, id := range ids {
		got, _, kinds := decided(all[id])
		require.Equal(t, fullLadder, kindsOf(got, kinds), id)
		// Effective once: the projection has one effective entry per decision.
		st := fullState(t, r1, id)
		effective := map[string]int{}
		for _, en := range st.GetTimeline() {
			if !en.GetNoEffect() {
				effective[en.GetEventId()]++
			}
		}
		for _, eid := range got {
			require.Equal(t, 1, effective[eid], "alert %s: %s", id, kinds[eid])
		}
	}
}

// TestKillBetweenClaimAndAppend stops a replica after it claimed a timer and
// decided, before it appended; a restarted replica fires the timer, and the
// escalation exists once by event id.
func TestKillBetweenClaimAndAppend(t *testing.T) {
	e := newEnv(t)
	var killed atomic.Bool
	var victim *instance
	ready := make(chan struct{})
	victim = e.start("victim", app.Hooks{BeforeAppend: func(ctx context.Context, tm lifecycle.Timer, _ []*eventsv1.Event) {
		<-ready
		if killed.CompareAndSwap(false, true) {
			// The process "dies" here: the service is cancelled and the
			// handler never reaches the append.
			victim.cancel()
			<-ctx.Done()
			panic("killed between claim and append")
		}
	}})
	close(ready)
	id := newAlertID("kill")
	// One escalation, then an hour to the next deadline: a second one on a
	// loaded machine would not be this test's business.
	e.append(context.Background(), raisedEvent(id), routedOnceEvent(id, time.Second, time.Hour))
	require.Eventually(t, killed.Load, 90*time.Second, 10*time.Millisecond)
	victim.stop()

	survivor := e.start("survivor", app.Hooks{})
	require.Eventually(t, func() bool {
		st, err := survivor.client.GetAlert(context.Background(), &ackv1.GetAlertRequest{AlertId: id})
		return err == nil && st.GetState().GetStep() == 1
	}, 90*time.Second, 20*time.Millisecond)
	got, records, kinds := decided(e.events(id))
	require.Equal(t, []string{"AlertEscalated ESCALATION_REASON_TIMEOUT 1/0"}, kindsOf(got, kinds))
	require.Equal(t, 1, records[got[0]], "the victim appended nothing; the survivor appended once")
	n := 0
	for _, en := range fullState(t, survivor, id).GetTimeline() {
		if en.GetEventId() == got[0] && !en.GetNoEffect() {
			n++
		}
	}
	require.Equal(t, 1, n)
}

// TestCrashAfterAppendBeforeConfirm makes the timer handler crash after the
// append, before the timer is confirmed: the timer fires again. The
// consumer holds the escalation until then, so the projection has not
// caught up when the second fire decides (as after a crash). The second
// fire decides on the alert as the log has it (docs/design.md, "Deciding on
// fresh state"): it finds the escalation already there, appends nothing,
// and arms the next deadline. Before #17 it decided on the projection and
// appended the same escalation a second time (harmless, one event id, but
// a decision taken on a state behind the log).
func TestCrashAfterAppendBeforeConfirm(t *testing.T) {
	e := newEnv(t)
	id := newAlertID("crash")
	var fires atomic.Int32
	secondFire := make(chan struct{})
	released := make(chan struct{})
	var held atomic.Bool
	var once sync.Once
	var mu sync.Mutex
	applied := map[string][]bool{} // escalation event id -> applied, per handling
	r := e.start("r1", app.Hooks{
		AfterAppend: func(_ context.Context, tm lifecycle.Timer, _ []*eventsv1.Event) {
			if tm.AlertID != id || tm.Step != 0 || tm.Repeat != 0 {
				return
			}
			if fires.Add(1) == 1 {
				panic("simulated crash after append")
			}
		},
		BeforeArm: func(_ context.Context, st *lifecycle.State) error {
			// Only the second fire can arm repeat 1 while the consumer
			// holds the escalation.
			if st.GetAlertId() == id && st.GetRepeat() == 1 && held.Load() {
				once.Do(func() { close(secondFire) })
			}
			return nil
		},
		Received: func(ev *eventsv1.Event) {
			if ev.GetAlertId() == id && ev.GetAlertEscalated() != nil {
				held.Store(true)
				select {
				case <-secondFire:
				case <-released:
				}
				held.Store(false)
			}
		},
		Applied: func(_ *lifecycle.State, ev *eventsv1.Event, ok bool) {
			if ev.GetAlertId() == id && ev.GetAlertEscalated() != nil {
				mu.Lock()
				applied[ev.GetEventId()] = append(applied[ev.GetEventId()], ok)
				mu.Unlock()
			}
		},
	})
	t.Cleanup(func() { close(released) }) // runs before the replica stops
	e.append(context.Background(), raisedEvent(id), routedEvent(id, nil, time.Second, time.Hour))
	select {
	case <-secondFire:
	case <-time.After(60 * time.Second):
		t.Fatalf("the timer fired %d times, want a second fire after the crash that arms the next deadline", fires.Load())
	}
	require.Equal(t, int32(1), fires.Load(), "the second fire appended again")
	var handled []bool
	var got []string
	var kinds map[string]string
	require.Eventually(t, func() bool {
		got, _, kinds = decided(e.events(id))
		if len(got) == 0 {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		handled = append(handled[:0], applied[got[0]]...)
		return len(handled) >= 1
	}, 30*time.Second, 20*time.Millisecond, "the consumer handles the escalation")
	require.Equal(t, "AlertEscalated ESCALATION_REASON_REPEAT 0/1", kinds[got[0]])
	_, records, _ := decided(e.events(id))
	require.Equal(t, 1, records[got[0]], "one record: the crashed fire's")
	require.Equal(t, []bool{true}, handled, "the projection applied the escalation once")
	n := 0
	for _, en := range fullState(t, r, id).GetTimeline() {
		if en.GetEventId() == got[0] {
			n++
		}
	}
	require.Equal(t, 1, n, "the timeline holds the escalation once")
}

func requireNoPatientData(t testing.TB, text string) {
	t.Helper()
	for _, bad := range []string{patientNHS, patientFamily, patientGiven, patientDOB, reportText, "ACC1"} {
		require.NotContains(t, text, bad)
	}
}

// TestStepFailedEscalatesAtOnceThroughTheLog: the notification service's
// step_failed (every recipient of the step exhausted) reaches the
// acknowledgement service through the real log, and the alert escalates at
// once with reason DELIVERY_FAILED, long before the step's timeout; the
// same failure delivered again escalates nothing more, and a failure of a
// step the alert has left has no effect.
func TestStepFailedEscalatesAtOnceThroughTheLog(t *testing.T) {
	e := newEnv(t)
	r := e.start("r1", app.Hooks{})
	id := newAlertID("step-failed")
	e.append(context.Background(), raisedEvent(id), routedEvent(id, nil, time.Hour, time.Hour, time.Hour))
	routed := e.waitState(r.client, id, ackv1.State_STATE_ROUTED, 30*time.Second)
	due := routed.GetState().GetStepDueAt().AsTime()
	failed := func(eventID string, step uint32) *eventsv1.Event {
		return &eventsv1.Event{EventId: eventID, AlertId: id, Tenant: "RZZ", OccurredAt: timestamppb.Now(),
			Payload: &eventsv1.Event_NotificationFailed{NotificationFailed: &eventsv1.NotificationFailed{
				NotificationId: "n-" + eventID, Step: step, Recipient: &eventsv1.Recipient{PersonId: "p1"},
				Permanent: true, RecipientExhausted: true, StepFailed: true}}}
	}
	e.append(context.Background(), failed("nf-1", 0))
	require.Eventually(t, func() bool { return fullState(t, r, id).GetState().GetStep() == 1 }, 30*time.Second, 20*time.Millisecond,
		"the alert moves to step 2 on the delivery failure")
	// The same failure delivered again, and another recipient's failure of
	// step 1, which the alert has left.
	e.append(context.Background(), failed("nf-1", 0), failed("nf-2", 0))
	// Every event handled, then every event those handlers appended.
	testinfra.WaitCommitted(t, e.cfg.Log.Brokers, e.cfg.Log.EventsTopic, 30*time.Second, e.cfg.GroupID)
	testinfra.WaitCommitted(t, e.cfg.Log.Brokers, e.cfg.Log.EventsTopic, 30*time.Second, e.cfg.GroupID)

	evs := e.events(id)
	got, records, kinds := decided(evs)
	require.Equal(t, []string{"AlertEscalated ESCALATION_REASON_DELIVERY_FAILED 1/0"}, kindsOf(got, kinds))
	require.Equal(t, 1, records[got[0]], "one escalation record")
	for _, ev := range evs {
		if ev.GetEventId() == got[0] {
			require.True(t, ev.GetOccurredAt().AsTime().Before(due), "escalated at %v, before the step's timeout at %v", ev.GetOccurredAt().AsTime(), due)
		}
	}
	st := fullState(t, r, id)
	require.Equal(t, uint32(1), st.GetState().GetStep())
	require.Equal(t, []bool{true}, effect(st, "AlertEscalated"))
}
