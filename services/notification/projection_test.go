package notification_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/telemetry"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
	"github.com/herald-health/herald/services/notification/internal/adapters/redisstore"
	"github.com/herald-health/herald/services/notification/internal/app"
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

// A rebuild reads the log, then writes what it read: a send recorded by a
// live worker in between (its record in Redis, its NotificationSent on the
// log after the rebuild's read) must survive the rebuild. The rebuild used
// to write every record it folded over what was there, so it put back the
// attempt it had read with no outcome ("sending", restored) over the
// worker's "sent", and the rebuilt job sent the message again once
// SendTimeout + Lease had passed (chaos run h17c-r2: 21 messages sent
// twice, each 20 s after the first, all begun in the 0.5 s after the
// FLUSHALL). Here the rebuild is another replica's, fed the log as it was
// before the send was recorded, so the interleaving is exact.
func TestARebuildDoesNotPutBackAnAttemptRecordedAsSentAfterItsRead(t *testing.T) {
	e := newEnv(t, nil)
	e.cfg.SendTimeout = 20 * time.Second // the held reply must not time out meanwhile
	block := make(chan struct{})
	e.smtp.mu.Lock()
	e.smtp.block = block
	e.smtp.mu.Unlock()
	e.rules.set("read", person("p-r", cp(chEmail, "read@nhs.test")))
	_, stop := e.start()
	id := alertID("read")
	e.append(raisedEvent(id), routedEvent(id, eventsv1.Category_CATEGORY_CRITICAL, step(0, nil, role("read"))))
	select {
	case <-e.smtp.inData: // the server has the message; its reply is held
	case <-time.After(60 * time.Second):
		t.Fatal("the message never reached the SMTP server")
	}
	e.waitEvents(id, "NotificationAttempted", 1)

	// The other replica's rebuild reads the log now: the attempt, no outcome.
	ctx := context.Background()
	var read []*eventsv1.Event
	require.NoError(t, eventlog.ReadTopic(ctx, e.cfg.Log, e.cfg.Log.EventsTopic, func(_, value []byte, _ int, _ int64) error {
		var ev eventsv1.Event
		if err := proto.Unmarshal(value, &ev); err != nil {
			return err
		}
		read = append(read, &ev)
		return nil
	}))

	// Redis is lost, and the other replica holds the rebuild lock (one
	// transaction: this replica's watcher cannot take it first).
	rdb := e.redis()
	lock := e.cfg.RedisPrefix + ":rebuild-lock"
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.FlushDB(ctx)
		p.Set(ctx, lock, "other-replica", time.Hour)
		return nil
	})
	require.NoError(t, err)

	// The provider answers: the live worker records the send (Redis, then
	// the log), after the rebuild's read.
	e.smtp.mu.Lock()
	e.smtp.block = nil
	e.smtp.mu.Unlock()
	close(block)
	e.waitEvents(id, "NotificationSent", 1)
	stop() // this replica stops; the other one finishes its rebuild

	require.NoError(t, rdb.Del(ctx, lock).Err())
	other := app.NewEngine(app.Options{Store: redisstore.New(rdb, e.cfg.RedisPrefix), Clock: clock.Real{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Telemetry: telemetry.Nop("test")})
	require.NoError(t, other.EnsureProjection(ctx, func(ctx context.Context, fn func(*eventsv1.Event) error) error {
		for _, ev := range read {
			if err := fn(ev); err != nil {
				return err
			}
		}
		return nil
	}))

	// A replica starts on the rebuilt projection and works the rebuilt job.
	// A restored attempt is resent SendTimeout + Lease after it began.
	e.cfg.SendTimeout = 2 * time.Second
	e.start()
	require.Eventually(t, func() bool {
		n, err := rdb.ZCard(ctx, e.cfg.RedisPrefix+":due").Result()
		c, cerr := rdb.ZCard(ctx, e.cfg.RedisPrefix+":due:critical").Result()
		return err == nil && cerr == nil && n+c == 0
	}, 2*time.Minute, 100*time.Millisecond, "the rebuilt job done")
	require.Len(t, e.smtp.to("read@nhs.test"), 1, "one message: the rebuild must not forget that it was sent")
}

// A replica stops mid-send (its attempt on the log, no outcome), the alert
// is acknowledged, then Redis is wiped. The rebuild finds the alert
// acknowledged and a step whose only record is that attempt: it used to
// take the step as told (the log "said" something of it), so the step got
// no job and its unsent message no event — a silent skip (chaos run
// h17c-r3). The step's job now runs, and the gate records the skip.
func TestAnAttemptCutShortThenAcknowledgedThenWipedIsSupersededNotSilent(t *testing.T) {
	e := newEnv(t, nil)
	e.cfg.SendTimeout = 20 * time.Second // the held reply must not time out meanwhile
	block := make(chan struct{})
	e.smtp.mu.Lock()
	e.smtp.block = block
	e.smtp.mu.Unlock()
	e.rules.set("cut", person("p-c", cp(chEmail, "cut@nhs.test")))
	_, stop := e.start()
	id := alertID("cut")
	e.append(raisedEvent(id), routedEvent(id, eventsv1.Category_CATEGORY_CRITICAL, step(0, nil, role("cut"))))
	select {
	case <-e.smtp.inData: // on the wire: the attempt is on the log, its reply held
	case <-time.After(60 * time.Second):
		t.Fatal("the message never reached the SMTP server")
	}
	e.waitEvents(id, "NotificationAttempted", 1)
	stop() // the replica goes mid-send: no outcome is recorded
	e.smtp.mu.Lock()
	e.smtp.block = nil
	e.smtp.mu.Unlock()
	close(block)
	require.Empty(t, e.events(id, "NotificationSent"))

	e.append(acknowledgedEvent(id, "p-c"))
	require.NoError(t, e.redis().FlushDB(context.Background()).Err())
	e.start() // rebuilds from the log: the alert acknowledged, step 0 only attempted
	e.waitEvents(id, "NotificationSuperseded", 1)
}
