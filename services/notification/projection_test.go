package notification_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
)

// A job in hand when Redis is wiped decides its send on a projection that
// is gone (no epoch) and not yet rebuilt: the rebuild lock is held by
// another replica meanwhile. The job waits for the rebuild
// (ErrProjectionLost) instead of deciding on the empty alert, which the
// gate took for "not routed" and dropped with a NotificationSuperseded
// (NOT_IN_POLICY). Once the rebuild runs, the message goes out, once, and
// the log records no supersession.
func TestAJobWhoseProjectionWasWipedWaitsForTheRebuild(t *testing.T) {
	e := newEnv(t, nil)
	e.cfg.RebuildLease = time.Hour // the other replica's lock outlasts the test unless released
	e.rules.set("wiped", person("p-w", cp(chEmail, "wiped@nhs.test")))
	entered, release := make(chan struct{}), make(chan struct{})
	first := true
	e.rules.mu.Lock()
	e.rules.block = func(ctx context.Context, _ *rulesv1.ResolveTargetsRequest) {
		e.rules.mu.Lock()
		was := first
		first = false
		e.rules.mu.Unlock()
		if !was {
			return
		}
		close(entered)
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	e.rules.mu.Unlock()
	e.start()
	id := alertID("wiped")
	e.append(raisedEvent(id), routedEvent(id, eventsv1.Category_CATEGORY_CRITICAL, step(0, nil, role("wiped"))))
	waitClosed(t, entered, "step 0's job resolving its targets")

	// Redis is lost while the job is in hand, and another replica takes the
	// rebuild lock in the same instant (one transaction: this replica's
	// watcher cannot take it first).
	rdb := e.redis()
	ctx := context.Background()
	lock := e.cfg.RedisPrefix + ":rebuild-lock"
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.FlushDB(ctx)
		p.Set(ctx, lock, "other-replica", time.Hour)
		return nil
	})
	require.NoError(t, err)
	close(release)

	// The job decides: it waits (a debug line says so) or, deciding on the
	// empty alert, drops the message.
	require.Eventually(t, func() bool {
		return strings.Contains(e.logs.String(), "notification job waits for the projection's rebuild") ||
			len(e.events(id, "NotificationSuperseded")) > 0
	}, 60*time.Second, 200*time.Millisecond, "the job decided while the projection was missing")
	require.Empty(t, e.events(id, "NotificationSuperseded"), "the message is not dropped as not routed")
	require.Empty(t, e.smtp.to("wiped@nhs.test"), "nothing sent before the rebuild")

	require.NoError(t, rdb.Del(ctx, lock).Err()) // the other replica gave the lock up: this one rebuilds
	e.waitEvents(id, "NotificationSent", 1)
	e.waitIdle()
	require.Len(t, e.smtp.to("wiped@nhs.test"), 1, "sent once, after the rebuild")
	require.Empty(t, e.events(id, "NotificationSuperseded"))
	require.Contains(t, e.logs.String(), "notification projection rebuilt from the log")
}

// Redis is wiped while a message is on the wire: the SMTP server has read
// it and holds its reply. The wipe takes the send's claim (the "sending"
// record) with it, and the log has no NotificationSent yet, so the rebuild
// schedules the step again from the log. The rebuilt job must not send the
// message a second time while the first send may still be answered: the
// attempt is on the log before the message goes out, the rebuild restores
// it as in flight, and the job waits for its outcome (issue #17, the
// chaos runs' duplicate messages).
func TestARedisWipeWhileAMessageIsOnTheWireSendsItOnce(t *testing.T) {
	e := newEnv(t, nil)
	e.cfg.SendTimeout = 20 * time.Second // the held reply must not time out meanwhile
	block := make(chan struct{})
	e.smtp.mu.Lock()
	e.smtp.block = block
	e.smtp.mu.Unlock()
	e.rules.set("wire", person("p-w", cp(chEmail, "wire@nhs.test")))
	e.start()
	id := alertID("wire")
	e.append(raisedEvent(id), routedEvent(id, eventsv1.Category_CATEGORY_CRITICAL, step(0, nil, role("wire"))))
	select {
	case <-e.smtp.inData: // the server has the message; its reply is held
	case <-time.After(60 * time.Second):
		t.Fatal("the message never reached the SMTP server")
	}
	rdb := e.redis()
	require.NoError(t, rdb.FlushDB(context.Background()).Err())

	// The replica notices the wipe and rebuilds; its rebuilt step job then
	// either sends a second message (held like the first) or waits for the
	// first one's outcome.
	require.Eventually(t, func() bool {
		return strings.Count(e.logs.String(), "notification projection rebuilt from the log") >= 2
	}, 60*time.Second, 20*time.Millisecond, "the rebuild after the wipe")
	select {
	case <-e.smtp.inData:
		t.Fatal("a second message was sent while the first was on the wire")
	case <-waitLog(e, "notification attempt in flight: waits for its outcome"):
	case <-time.After(60 * time.Second):
		t.Fatal("the rebuilt job neither sent nor waited")
	}
	e.smtp.mu.Lock()
	e.smtp.block = nil
	e.smtp.mu.Unlock()
	close(block) // the first send is answered

	e.waitEvents(id, "NotificationSent", 1)
	// The rebuilt job comes back when the first send must have ended
	// (SendTimeout + Lease after its attempt) and finds it recorded.
	require.Eventually(t, func() bool {
		n, err := rdb.ZCard(context.Background(), e.cfg.RedisPrefix+":due").Result()
		c, cerr := rdb.ZCard(context.Background(), e.cfg.RedisPrefix+":due:critical").Result()
		return err == nil && cerr == nil && n+c == 0
	}, 2*time.Minute, 100*time.Millisecond, "the rebuilt job done")
	require.Len(t, e.smtp.to("wire@nhs.test"), 1, "one message, though Redis was wiped while it was on the wire")
	require.Len(t, e.events(id, "NotificationSent"), 1)
}

// waitLog is closed when the service's log has line (it gives up after
// two minutes: the caller's own deadline is shorter).
func waitLog(e *env, line string) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		for end := time.Now().Add(2 * time.Minute); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if strings.Contains(e.logs.String(), line) {
				close(ch)
				return
			}
		}
	}()
	return ch
}
