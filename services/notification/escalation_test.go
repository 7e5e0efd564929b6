package notification_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/eventlog"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
	"github.com/herald-health/herald/services/notification/internal/adapters/redisstore"
)

// The tests of issue #17 on the notification side: no message after an
// acknowledgement already in the log, every skipped message an event, and
// the leases of a replica that died moving in bounded time.

func acknowledgedEvent(alertID, personID string) *eventsv1.Event {
	return &eventsv1.Event{EventId: eventlog.ID(alertID, "acknowledged", personID), AlertId: alertID, Tenant: "RZZ", OccurredAt: timestamppb.Now(),
		Payload: &eventsv1.Event_AlertAcknowledged{AlertAcknowledged: &eventsv1.AlertAcknowledged{
			Actor: &eventsv1.Actor{PersonId: personID}, Step: 0, Via: "link"}}}
}

func escalatedEvent(alertID string, from, to, repeat uint32) *eventsv1.Event {
	return &eventsv1.Event{EventId: eventlog.ID(alertID, "escalated", string(rune('0'+to)), string(rune('0'+repeat))), AlertId: alertID, Tenant: "RZZ",
		OccurredAt: timestamppb.Now(),
		Payload: &eventsv1.Event_AlertEscalated{AlertEscalated: &eventsv1.AlertEscalated{FromStep: from, ToStep: to, Repeat: repeat,
			Reason: eventsv1.EscalationReason_ESCALATION_REASON_TIMEOUT}}}
}

// superseded returns the NotificationSuperseded payloads of an alert.
func (e *env) superseded(alertID string) []*eventsv1.NotificationSuperseded {
	var out []*eventsv1.NotificationSuperseded
	for _, ev := range e.events(alertID, "NotificationSuperseded") {
		out = append(out, ev.GetNotificationSuperseded())
	}
	return out
}

// holdFirstResolve makes the first ResolveTargets call block until its
// caller gives up (the replica that made it stops): that replica holds the
// step's job in hand, leased to it. entered is closed when the call came.
func (f *fakeRules) holdFirstResolve() (entered <-chan struct{}) {
	in := make(chan struct{})
	var once sync.Once
	f.mu.Lock()
	defer f.mu.Unlock()
	f.block = func(ctx context.Context, _ *rulesv1.ResolveTargetsRequest) {
		first := false
		once.Do(func() { first = true })
		if !first {
			return
		}
		close(in)
		<-ctx.Done()
	}
	return in
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(60 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// A replica that catches up on a backlog (a restart, a rebalance, a new
// replica) applies AlertRouted and hands step 0's job to its fast lane
// before it applies the AlertAcknowledged that follows in the log. The
// send is decided behind the freshness barrier, on the projection read
// again once the alert's events in the log are applied: nothing is sent to
// anyone for the acknowledged alerts (the SMTP server and the webhook peer
// are the witnesses), each skipped message is a NotificationSuperseded,
// and the unacknowledged alert of the same backlog is sent.
func TestCatchUpSendsNothingForAnAlertAcknowledgedInTheBacklog(t *testing.T) {
	e := newEnv(t, nil)
	hook := e.sink.srv.URL + "/hooks/backlog"
	e.rules.set("backlog", person("p-a", cp(chEmail, "backlog-a@nhs.test")), person("p-b", cp(chWebhook, hook)))
	_, stop := e.start() // the store holds a projection (an epoch): the next replica catches up, no rebuild
	stop()
	var acked []string
	for i := range 6 {
		id := alertID("backlog-acked-" + string(rune('a'+i)))
		acked = append(acked, id)
		e.append(raisedEvent(id), routedEvent(id, eventsv1.Category_CATEGORY_CRITICAL, step(0, nil, role("backlog"))),
			acknowledgedEvent(id, "p-z"))
	}
	open := alertID("backlog-open")
	e.append(raisedEvent(open), routedEvent(open, eventsv1.Category_CATEGORY_CRITICAL, step(0, nil, role("backlog"))))

	e.start() // a fresh replica consumes the backlog
	e.waitEvents(open, "NotificationSent", 2)
	e.waitIdle()
	require.Equal(t, 1, len(e.smtp.to("backlog-a@nhs.test")), "only the open alert's email")
	require.Len(t, e.sink.on("/hooks/backlog"), 1, "only the open alert's webhook")
	for _, id := range acked {
		require.Empty(t, e.events(id, "NotificationSent"), "alert %s was acknowledged in the log before the send was decided", id)
		sup := e.superseded(id)
		require.NotEmpty(t, sup, "the skipped messages of %s are on its timeline", id)
		for _, s := range sup {
			require.Equal(t, eventsv1.SupersededReason_SUPERSEDED_REASON_ALERT_CLOSED, s.GetReasonCode())
		}
	}
	requireNoSecrets(t, e.logs.String())
}

// A step job held in the lease of a replica that died is overtaken by the
// next repeat of its step before the lease ends. The replica that claims it
// afterwards does not send it (the newer repeat went to the same people),
// and the log says so: NotificationSuperseded, reason overtaken, with the
// step and repeat, instead of nothing.
func TestOvertakenStepHeldByADeadReplicaIsRecordedSuperseded(t *testing.T) {
	e := newEnv(t, nil)
	e.cfg.Lease = time.Second
	e.rules.set("overtaken", person("p-o", cp(chEmail, "overtaken@nhs.test")))
	id := alertID("overtaken")
	s0 := step(0, nil, role("overtaken"))
	s0.Repeats = 1
	entered := e.rules.holdFirstResolve()
	_, stopA := e.start()
	e.append(raisedEvent(id), routedEvent(id, eventsv1.Category_CATEGORY_URGENT, s0))
	waitClosed(t, entered, "replica A resolving step 0")
	stopA() // A dies holding step 0, repeat 0, in its lease
	e.append(escalatedEvent(id, 0, 0, 1))

	e.start()
	var sup []*eventsv1.NotificationSuperseded
	require.Eventually(t, func() bool {
		sup = e.superseded(id)
		return len(sup) > 0
	}, 60*time.Second, 100*time.Millisecond, "NotificationSuperseded for the overtaken repeat")
	e.waitIdle()
	for _, s := range sup {
		require.Equal(t, eventsv1.SupersededReason_SUPERSEDED_REASON_OVERTAKEN, s.GetReasonCode())
		require.Equal(t, uint32(0), s.GetStep())
		require.Equal(t, uint32(0), s.GetRepeat())
		require.Equal(t, uint32(1), s.GetRound())
	}
	mails := e.smtp.to("overtaken@nhs.test")
	require.Len(t, mails, 1, "repeat 1 only: repeat 0 was overtaken")
	require.Len(t, e.events(id, "NotificationSent"), 1)
}

// A step job held in the lease of a replica that died is overtaken by the
// next step, and then Redis is lost: the rebuild must not keep only the
// current step's job, or step 0's recipients are never contacted and
// nothing says so. It schedules every step the round asked for; dedup
// keeps it from repeating what the log shows as sent.
func TestRebuildContactsAnEarlierStepHeldByADeadReplica(t *testing.T) {
	e := newEnv(t, nil)
	e.cfg.Lease = time.Second
	e.rules.set("rb0", person("p-0", cp(chEmail, "rebuild-0@nhs.test")))
	e.rules.set("rb1", person("p-1", cp(chEmail, "rebuild-1@nhs.test")))
	id := alertID("rebuild-held")
	entered := e.rules.holdFirstResolve()
	_, stopA := e.start()
	e.append(raisedEvent(id), routedEvent(id, eventsv1.Category_CATEGORY_URGENT, step(0, nil, role("rb0")), step(1, nil, role("rb1"))))
	waitClosed(t, entered, "replica A resolving step 0")
	stopA()
	e.append(escalatedEvent(id, 0, 1, 0))
	require.NoError(t, e.redis().FlushDB(context.Background()).Err()) // Redis lost with the held job

	e.start() // rebuilds from the log
	e.waitEvents(id, "NotificationSent", 2)
	e.waitIdle()
	require.Len(t, e.smtp.to("rebuild-0@nhs.test"), 1, "step 0's recipient is contacted")
	require.Len(t, e.smtp.to("rebuild-1@nhs.test"), 1)
}

// Short leases kept alive by a heartbeat: a job worked for several lease
// lengths stays with its replica (no other replica claims it and resolves
// it again), and when that replica stops it moves to the other, which
// sends it.
func TestLeaseIsRenewedWhileHeldAndMovesWhenItsReplicaStops(t *testing.T) {
	e := newEnv(t, nil)
	e.cfg.Lease = 3 * time.Second
	e.cfg.SendTimeout = time.Minute // the held call must not time out meanwhile
	e.rules.set("renew", person("p-r", cp(chEmail, "renew@nhs.test")))
	id := alertID("renew")
	entered := e.rules.holdFirstResolve()
	_, stopA := e.start()
	e.append(raisedEvent(id), routedEvent(id, eventsv1.Category_CATEGORY_CRITICAL, step(0, nil, role("renew"))))
	waitClosed(t, entered, "replica A resolving step 0")
	e.start() // replica B polls the schedule meanwhile
	time.Sleep(3 * e.cfg.Lease)
	require.Zero(t, e.rules.callCount(), "while A works the job (its call still in hand), its lease is renewed and B never claims it")
	stopped := time.Now()
	stopA()
	var mails []mail
	require.Eventually(t, func() bool {
		mails = e.smtp.to("renew@nhs.test")
		return len(mails) > 0
	}, 60*time.Second, 20*time.Millisecond, "B sends the job A held")
	t.Logf("job moved and sent %v after its replica stopped (lease %v)", mails[0].At.Sub(stopped).Round(time.Millisecond), e.cfg.Lease)
	e.waitIdle()
	require.Len(t, e.smtp.to("renew@nhs.test"), 1)
}

// A recipient's retry is claimed from the schedule and resolves the
// person's contact points again before it sends. An acknowledgement
// appended while that resolution is in progress (the rules service slow or
// restarting) stops the message: the send is decided after the resolution,
// just before the message is claimed, on the alert as the log has it.
// Decided before the resolution (as the freshness barrier at the top of
// deliver did), the retry went out to a clinician for an alert already
// accepted, seconds after the acknowledgement (issue #17, the chaos runs'
// messages begun 2–7 s after an acknowledgement).
func TestAnAcknowledgementAppendedWhileTheContactPointsAreResolvedStopsTheSend(t *testing.T) {
	e := newEnv(t, func(path string, n int) int {
		if n == 0 {
			return http.StatusServiceUnavailable // the first attempt fails: a retry is scheduled
		}
		return http.StatusOK
	})
	hook := e.sink.srv.URL + "/hooks/resolving"
	e.rules.set("resolving", person("p-r", cp(chWebhook, hook)))
	e.start()
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	e.rules.mu.Lock()
	e.rules.block = func(ctx context.Context, _ *rulesv1.ResolveTargetsRequest) {
		if calls.Add(1) != 2 {
			return // the step's resolution; the retry's is the second
		}
		close(entered)
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	e.rules.mu.Unlock()
	id := alertID("resolving")
	e.append(raisedEvent(id), routedEvent(id, eventsv1.Category_CATEGORY_CRITICAL, step(0, nil, role("resolving"))))
	waitClosed(t, entered, "the retry resolving the contact points")
	e.append(acknowledgedEvent(id, "p-z"))
	close(release)

	sup := e.waitEvents(id, "NotificationSuperseded", 1)
	require.Equal(t, eventsv1.SupersededReason_SUPERSEDED_REASON_ALERT_CLOSED, sup[0].GetNotificationSuperseded().GetReasonCode())
	e.waitIdle()
	require.Len(t, e.sink.on("/hooks/resolving"), 1, "only the first attempt, which failed, reached the peer")
	require.Empty(t, e.events(id, "NotificationSent"), "nothing sent after the acknowledgement was in the log")
}

// A replica SIGKILLed while it rebuilds the projection after a Redis wipe
// leaves the rebuild lock behind. The lock ends within its lease (the
// rebuilder renews it while it works), and the next replica rebuilds: the
// store gets its epoch back and sends resume. With the lock taken for 10
// minutes, as it was, every replica waited for it, and no step of any
// alert was sent meanwhile (issue #17, the chaos run's skipped messages
// after its FLUSHALL).
func TestARebuildLockLeftByADeadReplicaEndsWithinItsLease(t *testing.T) {
	e := newEnv(t, nil)
	e.cfg.RebuildLease = 2 * time.Second
	e.rules.set("after-wipe", person("p-w", cp(chEmail, "after-wipe@nhs.test")))
	_, stop := e.start()
	stop()
	rdb := e.redis()
	require.NoError(t, rdb.FlushDB(context.Background()).Err()) // Redis lost
	// The dead rebuilder's lock, as it took it (and never renewed it).
	dead := redisstore.New(rdb, e.cfg.RedisPrefix)
	locked, err := dead.LockRebuild(context.Background(), "dead-replica", e.cfg.RebuildLease)
	require.NoError(t, err)
	require.True(t, locked)

	e.start() // waits for the epoch: the rebuild ran once the dead lock ended
	id := alertID("after-wipe")
	e.append(raisedEvent(id), routedEvent(id, eventsv1.Category_CATEGORY_CRITICAL, step(0, nil, role("after-wipe"))))
	e.waitEvents(id, "NotificationSent", 1)
	require.Len(t, e.smtp.to("after-wipe@nhs.test"), 1)
	require.Contains(t, e.logs.String(), "notification projection rebuilt from the log")
}
