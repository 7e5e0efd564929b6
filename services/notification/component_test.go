package notification_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-health/herald/platform/acklink"
	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/testinfra"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	notificationv1 "github.com/herald-health/herald/proto/gen/herald/notification/v1"
	"github.com/herald-health/herald/services/notification/internal/channel"
)

var (
	chEmail   = eventsv1.Channel_CHANNEL_EMAIL
	chSMS     = eventsv1.Channel_CHANNEL_SMS
	chWebhook = eventsv1.Channel_CHANNEL_WEBHOOK
)

func alertID(name string) string {
	return eventlog.ID("RZZ", name, strconv.FormatInt(time.Now().UnixNano(), 10))
}

// Happy path: a routed alert reaches the referrer by email (SMTP with
// STARTTLS and AUTH) and an on-call person by signed webhook; both sends
// are recorded; a signed delivery receipt gives NotificationDelivered; no
// message and no log line carries patient data or contact addresses.
func TestHappyPath(t *testing.T) {
	e := newEnv(t, nil)
	id := alertID("happy")
	hook := e.sink.srv.URL + "/hooks/oncall"
	e.rules.set("referrer:G"+id[:6], person("p-ref", cp(chSMS, "+447700900111"), cp(chEmail, "referrer@nhs.test")))
	e.rules.set("oncall-rad", person("p-oncall", cp(chWebhook, hook)))
	svc, _ := e.start()

	e.append(raisedEvent(id), routedEvent(id, eventsv1.Category_CATEGORY_CRITICAL,
		step(0, []eventsv1.Channel{chEmail, chWebhook}, referrer(), role("oncall-rad"))))

	sent := e.waitEvents(id, "NotificationSent", 2)
	byChannel := map[eventsv1.Channel]*eventsv1.NotificationSent{}
	for _, ev := range sent {
		byChannel[ev.GetNotificationSent().GetChannel()] = ev.GetNotificationSent()
	}
	require.Equal(t, "p-ref", byChannel[chEmail].GetRecipient().GetPersonId())
	require.Equal(t, "p-oncall", byChannel[chWebhook].GetRecipient().GetPersonId())
	require.Equal(t, eventlog.ID(id, "0", "0", "p-ref", chEmail.String()), byChannel[chEmail].GetNotificationId())

	mails := e.smtp.to("referrer@nhs.test")
	require.Len(t, mails, 1)
	require.Contains(t, mails[0].Data, "Subject: CRITICAL imaging result")
	require.Contains(t, mails[0].Data, "https://herald.test/ack/")
	require.Contains(t, mails[0].Data, "Message-ID: <"+byChannel[chEmail].GetNotificationId()+"@")
	requireNoSecrets(t, mails[0].Data)
	require.Empty(t, e.sink.on("/v2/notifications/sms"), "step channels exclude SMS")

	hooks := e.sink.on("/hooks/oncall")
	require.Len(t, hooks, 1)
	require.True(t, hooks[0].SigOK, "webhook signature verifies")
	require.Equal(t, byChannel[chWebhook].GetNotificationId(), hooks[0].Header.Get(channel.HeaderIdempotencyKey))
	requireNoSecrets(t, string(hooks[0].Body))
	var payload channel.WebhookPayload
	require.NoError(t, json.Unmarshal(hooks[0].Body, &payload))
	require.Equal(t, "Critical", payload.Category)
	require.Equal(t, "RZZ", payload.Tenant)
	requireLinkUntilTheDeadline(t, e, payload.AckURL, "p-oncall", id, e.events(id, "AlertRouted")[0])

	// ListNotifications shows both as sent.
	c := e.client(svc)
	list, err := c.ListNotifications(context.Background(), &notificationv1.ListNotificationsRequest{AlertId: id})
	require.NoError(t, err)
	require.Len(t, list.GetNotifications(), 2)
	for _, n := range list.GetNotifications() {
		require.Equal(t, "sent", n.GetStatus())
	}

	// A signed receipt for the webhook notification: delivered.
	nid := byChannel[chWebhook].GetNotificationId()
	body := []byte(`{"reference":"` + nid + `","id":"r-1","status":"delivered"}`)
	post := func(sig string) int {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		req, _ := http.NewRequest(http.MethodPost, "http://"+svc.Addrs()["receipts"]+"/v1/receipts", bytes.NewReader(body))
		req.Header.Set(channel.HeaderTimestamp, ts)
		if sig == "" {
			sig = channel.Sign([]byte(receiptSecret), ts, body)
		}
		req.Header.Set(channel.HeaderSignature, sig)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusUnauthorized, post("sha256=00"))
	require.Equal(t, http.StatusNoContent, post(""))
	require.Equal(t, http.StatusNoContent, post(""), "a repeated receipt is harmless")
	delivered := e.waitEvents(id, "NotificationDelivered", 1)
	require.Equal(t, nid, delivered[0].GetNotificationDelivered().GetNotificationId())
	require.Equal(t, "r-1", delivered[0].GetNotificationDelivered().GetProviderReceiptId())

	// TestContactPoint reaches an address and says so.
	e.rules.set("checker", person("checker", cp(chEmail, "check@nhs.test")))
	tr, err := c.TestContactPoint(context.Background(), &notificationv1.TestContactPointRequest{Tenant: "RZZ", Channel: chEmail, Address: "check@nhs.test", PersonId: "checker"})
	require.NoError(t, err)
	require.True(t, tr.GetAccepted(), "error: %s", tr.GetError())
	require.Len(t, e.smtp.to("check@nhs.test"), 1)

	// ResendNotification: audited, sends again on purpose.
	rr, err := c.ResendNotification(context.Background(), &notificationv1.ResendNotificationRequest{
		NotificationId: byChannel[chEmail].GetNotificationId(), OperatorId: "op-7", Reason: "clinician asked"})
	require.NoError(t, err)
	require.Equal(t, uint32(2), rr.GetNotification().GetAttempts())
	require.Len(t, e.smtp.to("referrer@nhs.test"), 2)
	var resendAttempts []uint32
	for _, ev := range e.events(id, "NotificationAttempted") {
		if a := ev.GetNotificationAttempted(); a.GetNotificationId() == byChannel[chEmail].GetNotificationId() {
			resendAttempts = append(resendAttempts, a.GetAttempt())
		}
	}
	require.Equal(t, []uint32{1, 2}, resendAttempts, "the operator's resend has its attempt on the log before the send, as every send")
	_, err = c.ResendNotification(context.Background(), &notificationv1.ResendNotificationRequest{NotificationId: "x"})
	require.ErrorContains(t, err, "operator_id")

	logs := e.logs.String()
	require.Contains(t, logs, `"operator_id":"op-7"`)
	requireNoSecrets(t, logs, "referrer@nhs.test", "check@nhs.test", "+447700900111", hook, "/hooks/oncall", "https://herald.test/ack/")
}

// A 5xx is retried (and then succeeds); a 4xx is permanent and moves to the
// person's next contact point; when no contact point is left the recipient
// is exhausted, and when every recipient is, the step failed.
func TestRetryPermanentAndExhaustion(t *testing.T) {
	e := newEnv(t, func(path string, n int) int {
		switch {
		case path == "/hooks/flaky" && n == 0:
			return http.StatusServiceUnavailable
		case path == "/hooks/gone":
			return http.StatusGone
		case path == "/v2/notifications/sms":
			return http.StatusBadRequest
		}
		return http.StatusOK
	})
	flaky := alertID("flaky")
	e.rules.set("flaky", person("p-flaky", cp(chWebhook, e.sink.srv.URL+"/hooks/flaky")))
	fallback := alertID("fallback")
	e.rules.set("fallback", person("p-fb", cp(chSMS, "+447700900222"), cp(chEmail, "fallback@nhs.test")))
	dead := alertID("dead")
	e.rules.set("dead", person("p-d1", cp(chSMS, "+447700900333"), cp(chWebhook, e.sink.srv.URL+"/hooks/gone")),
		person("p-d2", cp(chEmail, "unknown-user@nhs.test")))
	_, _ = e.start()

	e.append(routedEvent(flaky, eventsv1.Category_CATEGORY_URGENT, step(0, nil, role("flaky"))),
		routedEvent(fallback, eventsv1.Category_CATEGORY_URGENT, step(0, nil, role("fallback"))),
		routedEvent(dead, eventsv1.Category_CATEGORY_URGENT, step(0, nil, role("dead"))))

	// 5xx then 2xx: one transient failure, then sent on attempt 2.
	sent := e.waitEvents(flaky, "NotificationSent", 1)
	require.Equal(t, uint32(2), sent[0].GetNotificationSent().GetAttempt())
	failed := e.events(flaky, "NotificationFailed")
	require.Len(t, failed, 1)
	require.False(t, failed[0].GetNotificationFailed().GetPermanent())
	require.Len(t, e.sink.on("/hooks/flaky"), 2)

	// 4xx on SMS: permanent, once; then email.
	sent = e.waitEvents(fallback, "NotificationSent", 1)
	require.Equal(t, chEmail, sent[0].GetNotificationSent().GetChannel())
	failed = e.events(fallback, "NotificationFailed")
	require.Len(t, failed, 1)
	require.True(t, failed[0].GetNotificationFailed().GetPermanent())
	require.Equal(t, chSMS, failed[0].GetNotificationFailed().GetChannel())
	require.False(t, failed[0].GetNotificationFailed().GetRecipientExhausted())
	require.Len(t, e.smtp.to("fallback@nhs.test"), 1)

	// Everybody unreachable: both exhausted, the last one fails the step.
	var exhausted []*eventsv1.NotificationFailed
	require.Eventually(t, func() bool {
		exhausted = exhausted[:0]
		for _, ev := range e.events(dead, "NotificationFailed") {
			if ev.GetNotificationFailed().GetRecipientExhausted() {
				exhausted = append(exhausted, ev.GetNotificationFailed())
			}
		}
		return len(exhausted) == 2
	}, 30*time.Second, 100*time.Millisecond)
	stepFailed := 0
	for _, f := range exhausted {
		if f.GetStepFailed() {
			stepFailed++
		}
	}
	require.Equal(t, 1, stepFailed, "step_failed exactly once: on the recipient whose exhaustion left nobody")
	require.Empty(t, e.events(dead, "NotificationSent"))
	require.Len(t, e.sink.on("/hooks/gone"), 1, "a 4xx is not retried")
	requireNoSecrets(t, e.logs.String(), "+447700900222", "fallback@nhs.test", "unknown-user@nhs.test", "/hooks/")
}

// An acknowledgement that arrives before a retry cancels it. The clock is
// simulated so that the retry can only happen when the test moves time.
func TestAcknowledgementCancelsRetry(t *testing.T) {
	e := newEnv(t, func(path string, n int) int { return http.StatusBadGateway })
	sim := clock.NewSimulated(time.Now())
	e.clock = sim
	e.cfg.RetryInitial, e.cfg.RetryMax = time.Minute, time.Minute
	e.cfg.Lease, e.cfg.SendTimeout = 10*time.Minute, 5*time.Second
	id := alertID("ack")
	e.rules.set("ack", person("p-a", cp(chWebhook, e.sink.srv.URL+"/hooks/ack")))
	svc, _ := e.start()
	e.append(routedEvent(id, eventsv1.Category_CATEGORY_URGENT, step(0, nil, role("ack"))))
	failed := e.waitEvents(id, "NotificationFailed", 1)
	require.False(t, failed[0].GetNotificationFailed().GetPermanent())

	e.append(&eventsv1.Event{EventId: eventlog.ID(id, "ack"), AlertId: id, Tenant: "RZZ",
		Payload: &eventsv1.Event_AlertAcknowledged{AlertAcknowledged: &eventsv1.AlertAcknowledged{
			Actor: &eventsv1.Actor{PersonId: "p-a"}, Step: 0}}})
	rdb := e.redis()
	require.Eventually(t, func() bool {
		b, err := rdb.Get(context.Background(), e.cfg.RedisPrefix+":alert:{"+id+"}").Bytes()
		return err == nil && strings.Contains(string(b), `"status":2`)
	}, 30*time.Second, 50*time.Millisecond, "acknowledgement applied")

	c := e.client(svc)
	require.Eventually(t, func() bool {
		sim.Advance(2 * time.Minute)
		list, err := c.ListNotifications(context.Background(), &notificationv1.ListNotificationsRequest{AlertId: id})
		return err == nil && len(list.GetNotifications()) == 1 && list.GetNotifications()[0].GetStatus() == "cancelled"
	}, 30*time.Second, 100*time.Millisecond)
	require.Len(t, e.sink.on("/hooks/ack"), 1, "the retry was cancelled")
	require.Empty(t, e.events(id, "NotificationSent"))
}

// Redis is a cache: after it is flushed, a restarted service rebuilds the
// projection and the dedup records from the log, and sends nothing twice.
func TestRedisLossRebuildsWithoutResending(t *testing.T) {
	e := newEnv(t, nil)
	open := alertID("open")
	acked := alertID("acked")
	e.rules.set("rb", person("p-rb", cp(chEmail, "rebuild@nhs.test")))
	e.rules.set("rb2", person("p-rb2", cp(chEmail, "rebuild2@nhs.test")))
	_, stop := e.start()
	e.append(routedEvent(open, eventsv1.Category_CATEGORY_CANCER, step(0, nil, role("rb"))),
		routedEvent(acked, eventsv1.Category_CATEGORY_URGENT, step(0, nil, role("rb2"))))
	e.waitEvents(open, "NotificationSent", 1)
	e.waitEvents(acked, "NotificationSent", 1)
	e.append(&eventsv1.Event{EventId: eventlog.ID(acked, "ack"), AlertId: acked, Tenant: "RZZ",
		Payload: &eventsv1.Event_AlertAcknowledged{AlertAcknowledged: &eventsv1.AlertAcknowledged{Actor: &eventsv1.Actor{PersonId: "p-rb2"}}}})
	testinfra.WaitCommitted(t, e.cfg.Log.Brokers, e.cfg.Log.EventsTopic, 30*time.Second, e.cfg.GroupID) // the acknowledgement applied
	stop()

	rdb := e.redis()
	require.NoError(t, rdb.FlushDB(context.Background()).Err())
	svc, _ := e.start()
	c := e.client(svc)
	require.Eventually(t, func() bool {
		list, err := c.ListNotifications(context.Background(), &notificationv1.ListNotificationsRequest{AlertId: open})
		return err == nil && len(list.GetNotifications()) == 1 && list.GetNotifications()[0].GetStatus() == "sent"
	}, 30*time.Second, 100*time.Millisecond, "records rebuilt from the log")
	require.Eventually(t, func() bool {
		n, err := rdb.ZCard(context.Background(), e.cfg.RedisPrefix+":due").Result()
		c, cerr := rdb.ZCard(context.Background(), e.cfg.RedisPrefix+":due:critical").Result()
		return err == nil && cerr == nil && n+c == 0
	}, 30*time.Second, 100*time.Millisecond, "the rebuilt step job ran")
	require.Len(t, e.smtp.to("rebuild@nhs.test"), 1, "no second message after the rebuild")
	require.Len(t, e.smtp.to("rebuild2@nhs.test"), 1)
	require.Len(t, e.events(open, "NotificationSent"), 1)
	require.Contains(t, e.logs.String(), "rebuilt from the log")
}

// Escalation, decline and the fail-safe queue: the next step's people are
// sent, a decliner is not sent again, and the fail-safe team is told.
func TestEscalationDeclineAndFailsafe(t *testing.T) {
	e := newEnv(t, nil)
	id := alertID("esc")
	e.rules.set("s0", person("p-s0", cp(chEmail, "s0@nhs.test")))
	e.rules.set("s1", person("p-s1a", cp(chEmail, "s1a@nhs.test")), person("p-s1b", cp(chEmail, "s1b@nhs.test")))
	e.rules.set("rzz-fs", person("p-fso", cp(chEmail, "failsafe@nhs.test")))
	_, _ = e.start()
	e.append(routedEvent(id, eventsv1.Category_CATEGORY_CRITICAL,
		step(0, nil, role("s0")), step(1, nil, role("s1"))))
	e.waitEvents(id, "NotificationSent", 1)
	esc := func(to, repeat uint32) *eventsv1.Event {
		return &eventsv1.Event{EventId: eventlog.ID(id, "escalated", strconv.Itoa(int(to)), strconv.Itoa(int(repeat))), AlertId: id, Tenant: "RZZ",
			Payload: &eventsv1.Event_AlertEscalated{AlertEscalated: &eventsv1.AlertEscalated{FromStep: 0, ToStep: to, Repeat: repeat}}}
	}
	e.append(esc(1, 0))
	e.waitEvents(id, "NotificationSent", 3)
	e.append(&eventsv1.Event{EventId: eventlog.ID(id, "declined"), AlertId: id, Tenant: "RZZ",
		Payload: &eventsv1.Event_AlertDeclined{AlertDeclined: &eventsv1.AlertDeclined{Actor: &eventsv1.Actor{PersonId: "p-s1b"}, Step: 1}}})
	e.append(esc(1, 1)) // a repeat of step 1: only the one who did not decline
	e.waitEvents(id, "NotificationSent", 4)
	e.append(&eventsv1.Event{EventId: eventlog.ID(id, "failsafe"), AlertId: id, Tenant: "RZZ",
		Payload: &eventsv1.Event_FailsafeQueued{FailsafeQueued: &eventsv1.FailsafeQueued{Queue: "rzz-fs", LastStep: 1}}})
	e.waitEvents(id, "NotificationSent", 5)
	require.Len(t, e.smtp.to("s0@nhs.test"), 1)
	require.Len(t, e.smtp.to("s1a@nhs.test"), 2, "step 1 and its repeat")
	require.Len(t, e.smtp.to("s1b@nhs.test"), 1, "the decliner got nothing more")
	fs := e.smtp.to("failsafe@nhs.test")
	require.Len(t, fs, 1)
	require.Contains(t, fs[0].Data, "Fail-safe queue")
	requireNoSecrets(t, fs[0].Data)
}

// The dev composition: every channel captured in memory (and logged by id).
func TestCaptureAllForDevelopment(t *testing.T) {
	e := newEnv(t, nil)
	e.cfg.SMTPAddr, e.cfg.NotifyBaseURL, e.cfg.WebhookSecret = "", "", ""
	capture := e.cfg.CaptureAll(nil)
	id := alertID("dev")
	e.rules.set("dev", person("p-dev", cp(chSMS, "+447700900444")))
	_, _ = e.start()
	e.append(routedEvent(id, eventsv1.Category_CATEGORY_SIGNIFICANT_UNEXPECTED, step(0, nil, role("dev"))))
	e.waitEvents(id, "NotificationSent", 1)
	msgs := capture.ByChannel(chSMS)
	require.Len(t, msgs, 1)
	require.Equal(t, "+447700900444", msgs[0].Address)
	require.Contains(t, msgs[0].Body, "Significant unexpected")
	require.Zero(t, e.smtp.count())
}

// Two routings of one alert in quick succession (the final report upgrades
// a preliminary's URGENT to CRITICAL while the first send may be in flight):
// the recipient hears of the CRITICAL category, and gets at most one message
// per routing round (a first-round send not yet made is superseded; one
// already past its gate may still arrive, after the CRITICAL one).
func TestAnUpgradeReRoutesAndTellsStepZeroAgain(t *testing.T) {
	e := newEnv(t, nil)
	id := alertID("twice")
	e.rules.set("twice", person("p-2x", cp(chEmail, "twice@nhs.test"), cp(chWebhook, e.sink.srv.URL+"/hooks/twice")))
	_, _ = e.start()
	first := routedEvent(id, eventsv1.Category_CATEGORY_URGENT, step(0, nil, role("twice")))
	second := routedEvent(id, eventsv1.Category_CATEGORY_CRITICAL, step(0, nil, role("twice")))
	second.EventId = eventlog.ID(id, "routed", "amended")
	e.append(first, second)
	e.waitEvents(id, "NotificationSent", 1)
	defer func() {
		if t.Failed() {
			for _, m := range e.smtp.to("twice@nhs.test") {
				t.Logf("mail: %.200q", m.Data)
			}
			for _, typ := range []string{"NotificationSent", "NotificationFailed"} {
				for _, ev := range e.events(id, typ) {
					t.Logf("%s %v", typ, ev.GetPayload())
				}
			}
		}
	}()
	require.Eventually(t, func() bool {
		for _, m := range e.smtp.to("twice@nhs.test") {
			if strings.Contains(m.Data, "CRITICAL") {
				return true
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond, "the recipient never heard of the CRITICAL upgrade")
	e.waitIdle()
	require.LessOrEqual(t, len(e.smtp.to("twice@nhs.test")), 2, "one message per routing round at most")
	require.Empty(t, e.sink.on("/hooks/twice"), "the first contact point succeeded: no fallback")
}

// A duplicate of an alert's first event on the log after its routing (an
// intake append retried after a timeout writes AlertRaised twice, with one
// id) leaves the projection as it was: nothing is re-applied or sent.
func TestADuplicateFirstEventChangesNothing(t *testing.T) {
	e := newEnv(t, nil)
	id := alertID("duplicate")
	e.rules.set("redo", person("p-redo", cp(chEmail, "redo@nhs.test")))
	e.start()
	raised, routed := raisedEvent(id), routedEvent(id, eventsv1.Category_CATEGORY_URGENT, step(0, nil, role("redo")))
	e.append(raised, routed)
	e.waitEvents(id, "NotificationSent", 1)

	key := e.cfg.RedisPrefix + ":alert:{" + id + "}"
	before, err := e.redis().Get(context.Background(), key).Result()
	require.NoError(t, err)
	require.Contains(t, before, `"routed":true`)
	e.append(raised)
	marker := routedEvent(alertID("marker"), eventsv1.Category_CATEGORY_URGENT, step(0, nil, role("redo")))
	e.append(marker)
	e.waitEvents(marker.GetAlertId(), "NotificationSent", 1)
	e.waitIdle()

	after, err := e.redis().Get(context.Background(), key).Result()
	require.NoError(t, err)
	require.Equal(t, before, after, "the projection after the duplicate")
	require.Len(t, e.events(id, "NotificationSent"), 1)
	require.Len(t, e.smtp.to("redo@nhs.test"), 2, "one message for the alert, one for the marker")
}

// Under a backlog (one worker, busy), a CRITICAL alert routed after four
// URGENT ones is sent before them.
func TestUnderABacklogACriticalAlertGoesFirst(t *testing.T) {
	e := newEnv(t, nil)
	e.cfg.Workers = 1
	block := make(chan struct{})
	e.smtp.mu.Lock()
	e.smtp.block = block
	e.smtp.mu.Unlock()
	ids := map[string]string{}
	for _, name := range []string{"u0", "u1", "u2", "u3", "u4", "c"} {
		ids[name] = alertID("backlog-" + name)
		e.rules.set("backlog-"+name, person("p-"+name, cp(chEmail, name+"@nhs.test")))
	}
	routed := func(name string, cat eventsv1.Category) *eventsv1.Event {
		return routedEvent(ids[name], cat, step(0, nil, role("backlog-"+name)))
	}
	e.start()
	e.append(routed("u0", eventsv1.Category_CATEGORY_URGENT))
	select {
	case <-e.smtp.inData: // the only worker is busy with u0
	case <-time.After(30 * time.Second):
		t.Fatal("u0 never reached the SMTP server")
	}
	e.append(routed("u1", eventsv1.Category_CATEGORY_URGENT), routed("u2", eventsv1.Category_CATEGORY_URGENT),
		routed("u3", eventsv1.Category_CATEGORY_URGENT), routed("u4", eventsv1.Category_CATEGORY_URGENT),
		routed("c", eventsv1.Category_CATEGORY_CRITICAL))
	// Every event handled: the handler returns only after it has put the
	// step's job in its lane.
	testinfra.WaitCommitted(t, e.cfg.Log.Brokers, e.cfg.Log.EventsTopic, 30*time.Second, e.cfg.GroupID)
	e.smtp.mu.Lock()
	e.smtp.block = nil
	e.smtp.mu.Unlock()
	close(block)

	require.Eventually(t, func() bool { return e.smtp.count() == 6 }, 30*time.Second, 20*time.Millisecond)
	e.smtp.mu.Lock()
	var order []string
	for _, m := range e.smtp.mails {
		order = append(order, strings.TrimSuffix(m.To, "@nhs.test"))
	}
	e.smtp.mu.Unlock()
	require.Equal(t, []string{"u0", "c"}, order[:2], "sent in the order %v", order)
}

// Under sustained overload the fast lanes would take every worker as it
// frees; a share of the workers is kept for scheduled jobs, so a CRITICAL
// alert's retry is sent while every fast-lane worker is stuck in a send.
// The clock is simulated: the retry falls due only when the test moves it,
// after the fast lanes are full.
func TestARetryIsSentWhileTheFastLanesHoldTheirWorkers(t *testing.T) {
	e := newEnv(t, func(path string, n int) int {
		if path == "/hooks/flaky" && n == 0 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	sim := clock.NewSimulated(time.Now())
	e.clock = sim
	e.cfg.Workers, e.cfg.ScheduleWorkers = 3, 1
	// Leases outlast the clock's move, so no fast-lane job is handed out
	// again; the stuck sends do not time out meanwhile.
	e.cfg.RetryInitial, e.cfg.RetryMax = time.Minute, time.Minute
	e.cfg.SendTimeout, e.cfg.Lease = 30*time.Second, time.Hour
	flaky := alertID("reserve-flaky")
	e.rules.set("reserve-flaky", person("p-flaky", cp(chWebhook, e.sink.srv.URL+"/hooks/flaky")))
	ids := map[string]string{}
	for _, name := range []string{"u0", "u1", "u2"} {
		ids[name] = alertID("reserve-" + name)
		e.rules.set("reserve-"+name, person("p-"+name, cp(chEmail, name+"@nhs.test")))
	}
	e.start()
	e.append(routedEvent(flaky, eventsv1.Category_CATEGORY_CRITICAL, step(0, nil, role("reserve-flaky"))))
	e.waitEvents(flaky, "NotificationFailed", 1) // the retry is scheduled, a minute ahead

	block := make(chan struct{})
	defer close(block)
	e.smtp.mu.Lock()
	e.smtp.block = block
	e.smtp.mu.Unlock()
	for _, name := range []string{"u0", "u1", "u2"} {
		e.append(routedEvent(ids[name], eventsv1.Category_CATEGORY_URGENT, step(0, nil, role("reserve-"+name))))
	}
	for range 2 { // both fast-lane workers are stuck; u2 waits for one
		select {
		case <-e.smtp.inData:
		case <-time.After(30 * time.Second):
			t.Fatal("the urgent alerts never reached the SMTP server")
		}
	}
	testinfra.WaitCommitted(t, e.cfg.Log.Brokers, e.cfg.Log.EventsTopic, 30*time.Second, e.cfg.GroupID) // u2 is in its lane
	require.Empty(t, e.events(flaky, "NotificationSent"), "the clock has not moved: the retry is not due")

	sim.Advance(time.Minute)
	require.Eventually(t, func() bool { return len(e.events(flaky, "NotificationSent")) == 1 }, 30*time.Second, 20*time.Millisecond,
		"the retry is due, and the fast lanes hold their workers until the test ends: it must not wait for them")
	require.Len(t, e.sink.on("/hooks/flaky"), 2)
	select {
	case <-e.smtp.inData:
		t.Fatal("a third urgent send started: the fast lanes took the schedules' worker")
	default:
	}
}

// TestContactPoint goes only to a contact point the tenant's bundle gives
// the named person: an arbitrary address (an internal URL, a stranger) is
// refused before anything is sent, and a failed send says whether to retry
// without echoing the provider's error (hosts, ports, addresses).
func TestContactPointOnlyToConfiguredContacts(t *testing.T) {
	e := newEnv(t, nil)
	svc, stop := e.start()
	defer stop()
	c := e.client(svc)
	ctx := context.Background()
	closed := testinfra.FreePort(t) // nothing listens: the send fails
	e.rules.set("checker", person("checker", cp(chEmail, "check@nhs.test"), cp(chWebhook, "http://"+closed+"/hook")))

	_, err := c.TestContactPoint(ctx, &notificationv1.TestContactPointRequest{Tenant: "RZZ", Channel: chEmail, Address: "check@nhs.test"})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.ErrorContains(t, err, "person_id")

	for name, req := range map[string]*notificationv1.TestContactPointRequest{
		"an address nobody has":          {Tenant: "RZZ", Channel: chWebhook, Address: "http://169.254.169.254/latest/meta-data", PersonId: "checker"},
		"another channel's address":      {Tenant: "RZZ", Channel: chWebhook, Address: "check@nhs.test", PersonId: "checker"},
		"a person the bundle lacks":      {Tenant: "RZZ", Channel: chEmail, Address: "check@nhs.test", PersonId: "stranger"},
		"the person's email, other case": {Tenant: "RZZ", Channel: chEmail, Address: "CHECK@nhs.test", PersonId: "checker"},
	} {
		_, err := c.TestContactPoint(ctx, req)
		require.Equal(t, codes.FailedPrecondition, status.Code(err), name)
		require.NotContains(t, err.Error(), req.GetAddress(), "%s: the refusal echoes the address", name)
	}
	require.Empty(t, e.smtp.to("check@nhs.test"), "nothing is sent for a refused test")
	require.Empty(t, e.sink.on("/latest/meta-data"))

	tr, err := c.TestContactPoint(ctx, &notificationv1.TestContactPointRequest{Tenant: "RZZ", Channel: chWebhook, Address: "http://" + closed + "/hook", PersonId: "checker"})
	require.NoError(t, err)
	require.False(t, tr.GetAccepted())
	require.NotContains(t, tr.GetError(), closed, "the error echoes the connection details")
	require.NotContains(t, tr.GetError(), "127.0.0.1")
	require.Contains(t, tr.GetError(), "provider")
}

// requireLinkUntilTheDeadline: the link verifies with the public key alone
// (the acknowledgement service holds no private key), names the recipient
// and the alert, and expires at the alert's acknowledge-by clock, not the
// 72-hour cap (LinkExpiry).
func requireLinkUntilTheDeadline(t *testing.T, e *env, link, person, alertID string, routed *eventsv1.Event) {
	t.Helper()
	require.True(t, strings.HasPrefix(link, "https://herald.test/ack/"), link)
	v, err := acklink.LoadVerifier(e.linkKeys.PublicKeyFile)
	require.NoError(t, err)
	token := strings.TrimPrefix(link, "https://herald.test/ack/")
	require.True(t, strings.HasPrefix(token, e.linkKeys.KeyID+"."), "the link names its signing key")
	c, err := v.Verify(token, time.Now())
	require.NoError(t, err)
	require.Equal(t, person, c.PersonID)
	require.Equal(t, alertID, c.AlertID)
	deadline := routed.GetAlertRouted().GetClocks().GetAcknowledgeBy().AsTime()
	require.Equal(t, deadline.Unix(), c.ExpiresAt.Unix(), "the link lives until the acknowledge-by clock")
}
