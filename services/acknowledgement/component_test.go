package acknowledgement_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"github.com/stretchr/testify/require"
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

// TestAcknowledgementRacesTimer acknowledges alerts right at their step
// deadline: whichever reaches the log first wins, and the projection agrees
// with the log order.
func TestAcknowledgementRacesTimer(t *testing.T) {
	e := newEnv(t)
	r1, r2 := e.start("r1", app.Hooks{}), e.start("r2", app.Hooks{})
	const n = 10
	timeout := 1500 * time.Millisecond
	var ids []string
	for i := range n {
		id := newAlertID(fmt.Sprintf("race-%d", i))
		ids = append(ids, id)
		e.append(context.Background(), raisedEvent(id), routedEvent(id, nil, timeout, time.Hour))
	}
	for _, id := range ids {
		e.waitState(r1.client, id, ackv1.State_STATE_ROUTED, 30*time.Second)
	}
	var wg sync.WaitGroup
	for i, id := range ids {
		st, err := r1.client.GetAlert(context.Background(), &ackv1.GetAlertRequest{AlertId: id})
		require.NoError(t, err)
		due := st.GetState().GetStepDueAt().AsTime()
		c := []*instance{r1, r2}[i%2].client
		wg.Go(func() {
			// Spread around the deadline: some before, some after the timer.
			time.Sleep(time.Until(due.Add(time.Duration(i%5-2) * 5 * time.Millisecond)))
			_, err := c.Acknowledge(context.Background(), &ackv1.AcknowledgeRequest{AlertId: id, RequestId: "ack-" + id,
				Actor: &eventsv1.Actor{PersonId: "dr-" + id[:4]}, Via: "grpc"})
			require.NoError(t, err)
		})
	}
	wg.Wait()
	escFirst := 0
	defer func() { t.Logf("escalation first: %d of %d alerts", escFirst, n) }()
	for _, id := range ids {
		got := e.waitState(r2.client, id, ackv1.State_STATE_ACKNOWLEDGED, 30*time.Second)
		// The projection is the fold of the log, in log order.
		require.Eventually(t, func() bool {
			return len(e.events(id)) == len(fullState(t, r1, id).GetTimeline())
		}, 10*time.Second, 50*time.Millisecond)
		folded := lifecycle.Fold(e.events(id)...)
		require.Equal(t, folded.GetState(), got.GetState().GetState())
		require.Equal(t, folded.GetStep(), got.GetState().GetStep())
		require.Equal(t, folded.GetRepeat(), got.GetState().GetRepeat())
		escalatedFirst := false
		for _, ev := range e.events(id) {
			if _, ok := ev.GetPayload().(*eventsv1.Event_AlertEscalated); ok {
				escalatedFirst = true
				break
			}
			if _, ok := ev.GetPayload().(*eventsv1.Event_AlertAcknowledged); ok {
				break
			}
		}
		if escalatedFirst {
			escFirst++
			require.Equal(t, uint32(1), got.GetState().GetRepeat(), "escalation reached the log first: it counts")
		} else {
			require.Equal(t, uint32(0), got.GetState().GetRepeat(), "acknowledgement reached the log first: the escalation has no effect")
		}
	}
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
	for _, id := range ids {
		require.Eventually(t, func() bool {
			st, err := r1.client.GetAlert(context.Background(), &ackv1.GetAlertRequest{AlertId: id})
			return err == nil && st.GetState().GetRepeat() == 1
		}, 30*time.Second, 20*time.Millisecond)
	}
	require.NoError(t, e.rdb.FlushDB(context.Background()).Err())
	for i, id := range ids {
		e.waitState([]*instance{r1, r2}[i%2].client, id, ackv1.State_STATE_FAILSAFE, 60*time.Second)
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
	e.append(context.Background(), raisedEvent(id), routedEvent(id, nil, time.Second, time.Hour))
	require.Eventually(t, killed.Load, 30*time.Second, 10*time.Millisecond)
	victim.stop()

	survivor := e.start("survivor", app.Hooks{})
	require.Eventually(t, func() bool {
		st, err := survivor.client.GetAlert(context.Background(), &ackv1.GetAlertRequest{AlertId: id})
		return err == nil && st.GetState().GetRepeat() == 1
	}, 30*time.Second, 20*time.Millisecond)
	got, records, kinds := decided(e.events(id))
	require.Equal(t, []string{"AlertEscalated ESCALATION_REASON_REPEAT 0/1"}, kindsOf(got, kinds))
	require.Equal(t, 1, records[got[0]], "the victim appended nothing; the survivor appended once")
	n := 0
	for _, en := range fullState(t, survivor, id).GetTimeline() {
		if en.GetEventId() == got[0] && !en.GetNoEffect() {
			n++
		}
	}
	require.Equal(t, 1, n)
}

// TestCrashAfterAppendBeforeConfirm makes the timer handler fail after the
// append (as a crash before the timer is confirmed would): the timer fires
// again, and the escalation counts once by event id.
func TestCrashAfterAppendBeforeConfirm(t *testing.T) {
	e := newEnv(t)
	var crashed atomic.Bool
	r := e.start("r1", app.Hooks{AfterAppend: func(context.Context, lifecycle.Timer, []*eventsv1.Event) {
		if crashed.CompareAndSwap(false, true) {
			panic("simulated crash after append")
		}
	}})
	id := newAlertID("crash")
	e.append(context.Background(), raisedEvent(id), routedEvent(id, nil, time.Second, time.Hour))
	require.Eventually(t, func() bool {
		st, err := r.client.GetAlert(context.Background(), &ackv1.GetAlertRequest{AlertId: id})
		return err == nil && st.GetState().GetRepeat() == 1
	}, 30*time.Second, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // let a second fire land (the next step is due 1 s later)
	require.True(t, crashed.Load())
	got, records, kinds := decided(e.events(id))
	require.Equal(t, []string{"AlertEscalated ESCALATION_REASON_REPEAT 0/1"}, kindsOf(got, kinds))
	t.Logf("escalation records in the log: %d (a second is harmless)", records[got[0]])
	st := fullState(t, r, id)
	n := 0
	for _, en := range st.GetTimeline() {
		if en.GetEventId() == got[0] {
			n++
		}
	}
	require.Equal(t, 1, n, "the projection applied the escalation once")
}

func requireNoPatientData(t testing.TB, text string) {
	t.Helper()
	for _, bad := range []string{patientNHS, patientFamily, patientGiven, patientDOB, reportText, "ACC1"} {
		require.NotContains(t, text, bad)
	}
}
