package acknowledgement_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"github.com/stretchr/testify/require"
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
	got, records, kinds := decided(e.events(id))
	require.Equal(t, []string{"AlertEscalated ESCALATION_REASON_REPEAT 0/1"}, kindsOf(got, kinds))
	require.Equal(t, 1, records[got[0]])
}

