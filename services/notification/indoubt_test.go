package notification_test

import (
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/notification/internal/channel"
)

// The in-doubt policy (issue 17): a message whose replica stopped between
// claiming the send and recording the provider's answer is in doubt. It is
// sent again, once that send must have ended, with the same idempotency key
// (SMTP Message-ID, webhook Idempotency-Key): a possible duplicate, which a
// receiver honouring the key drops, is safer than a possible silent loss.
// It was recorded as sent and never resent, and a replica killed with ~23
// SMTP transactions open left 18 people never told.

var messageIDHeader = regexp.MustCompile(`(?m)^Message-ID: (\S+)\r?$`)

// holdSends makes the channel's test receiver hold every message
// unanswered until release is closed; lose: the receiver then drops it
// (it never took it), else it keeps it (it has it, the answer is lost).
func holdSends(e *env, ch eventsv1.Channel, release chan struct{}, lose bool) (held chan struct{}) {
	if ch == chEmail {
		e.smtp.mu.Lock()
		defer e.smtp.mu.Unlock()
		e.smtp.block, e.smtp.lose = release, lose
		return e.smtp.inData
	}
	e.sink.mu.Lock()
	defer e.sink.mu.Unlock()
	e.sink.block, e.sink.lose = release, lose
	return e.sink.held
}

func stopHolding(e *env) {
	e.smtp.mu.Lock()
	e.smtp.block, e.smtp.lose = nil, false
	e.smtp.mu.Unlock()
	e.sink.mu.Lock()
	e.sink.block, e.sink.lose = nil, false
	e.sink.mu.Unlock()
}

func waitHeld(t *testing.T, held chan struct{}) {
	t.Helper()
	select {
	case <-held:
	case <-time.After(60 * time.Second):
		t.Fatal("the message never reached its receiver")
	}
}

// receivedKeys returns the idempotency key of each message the receiver of
// the channel kept for addr, in arrival order.
func receivedKeys(t *testing.T, e *env, ch eventsv1.Channel, addr, path string) []string {
	t.Helper()
	var keys []string
	if ch == chEmail {
		for _, m := range e.smtp.to(addr) {
			match := messageIDHeader.FindStringSubmatch(m.Data)
			require.NotNil(t, match, "a mail without a Message-ID")
			keys = append(keys, match[1])
		}
		return keys
	}
	for _, r := range e.sink.on(path) {
		keys = append(keys, r.Header.Get(channel.HeaderIdempotencyKey))
	}
	return keys
}

func TestAMessageInDoubtIsResentWithTheSameIdempotencyKey(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ch       eventsv1.Channel
		received bool
	}{
		{"email never received", chEmail, false},
		{"email received", chEmail, true},
		{"webhook never received", chWebhook, false},
		{"webhook received", chWebhook, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			name := map[bool]string{false: "lost", true: "kept"}[tc.received]
			addr, path := name+"@nhs.test", "/hooks/"+name
			if tc.ch == chWebhook {
				addr = e.sink.srv.URL + path
			}
			release := make(chan struct{})
			held := holdSends(e, tc.ch, release, !tc.received)
			id := alertID("in-doubt-" + name)
			e.rules.set(name, person("p-"+name, cp(tc.ch, addr)))
			_, stop := e.start()
			e.append(routedEvent(id, eventsv1.Category_CATEGORY_CRITICAL, step(0, nil, role(name))))
			waitHeld(t, held)
			stop() // the replica dies with the send claimed and unanswered
			stopHolding(e)
			close(release)

			_, _ = e.start()
			sent := e.waitEvents(id, "NotificationSent", 1)[0].GetNotificationSent()
			nid := sent.GetNotificationId()
			require.Equal(t, uint32(2), sent.GetAttempt(), "sent by a second attempt")
			attempts := e.events(id, "NotificationAttempted")
			require.Len(t, attempts, 2)
			require.Zero(t, attempts[0].GetNotificationAttempted().GetInDoubtResend())
			require.Equal(t, uint32(1), attempts[1].GetNotificationAttempted().GetInDoubtResend(), "the timeline shows the resend in doubt")

			key := nid
			if tc.ch == chEmail {
				key = "<" + nid + "@herald.invalid>"
			}
			keys := receivedKeys(t, e, tc.ch, addr, path)
			if tc.received {
				require.Equal(t, []string{key, key}, keys, "the resend carries the first attempt's key, so a receiver honouring it keeps one")
			} else {
				require.Equal(t, []string{key}, keys, "the recipient gets exactly one message: the resend")
			}
			require.Contains(t, e.logs.String(), "notification in doubt: sent again with the same idempotency key")
		})
	}
}

// A message whose sending stops its replica every time (or a receiver
// that never answers while replicas die) must not loop: after
// InDoubtResends resends it fails on that contact point, saying why, and
// the person's next contact point is tried, as for any failed delivery.
func TestAMessageInDoubtTooOftenFailsOverToTheNextContactPoint(t *testing.T) {
	e := newEnv(t, nil)
	e.cfg.InDoubtResends = 1
	release := make(chan struct{})
	held := holdSends(e, chEmail, release, true)
	id := alertID("poison")
	e.rules.set("poison", person("p-poison", cp(chEmail, "poison@nhs.test"), cp(chSMS, "+447700900444")))
	_, stop := e.start()
	e.append(routedEvent(id, eventsv1.Category_CATEGORY_CRITICAL, step(0, nil, role("poison"))))
	waitHeld(t, held)
	stop()
	_, stop = e.start()
	waitHeld(t, held) // the one resend in doubt, held again
	stop()
	stopHolding(e)
	close(release)

	_, _ = e.start()
	sent := e.waitEvents(id, "NotificationSent", 1)[0].GetNotificationSent()
	require.Equal(t, chSMS, sent.GetChannel(), "the next contact point is tried")
	failed := e.events(id, "NotificationFailed")
	require.Len(t, failed, 1)
	f := failed[0].GetNotificationFailed()
	require.Equal(t, chEmail, f.GetChannel())
	require.True(t, f.GetPermanent())
	require.Contains(t, f.GetReason(), "in doubt")
	require.False(t, f.GetRecipientExhausted())
	var resends []uint32
	for _, ev := range e.events(id, "NotificationAttempted") {
		if a := ev.GetNotificationAttempted(); a.GetChannel() == chEmail {
			resends = append(resends, a.GetInDoubtResend())
		}
	}
	require.Equal(t, []uint32{0, 1}, resends, "one resend in doubt, then no more")
	require.Empty(t, e.smtp.to("poison@nhs.test"))
	require.Len(t, e.sink.on("/v2/notifications/sms"), 1)
}

// A digest in doubt is resent too, with the digest's id as its key, and
// each message it merges has its attempt on the log before the send.
func TestADigestInDoubtIsResentWithTheSameMessageID(t *testing.T) {
	e := newEnv(t, nil)
	e.cfg.RateLimitMax, e.cfg.RateLimitWindow, e.cfg.RateLimitDigestAfter = 1, time.Hour, time.Second
	e.rules.set("digest", person("p-digest", cp(chEmail, "digest@nhs.test")))
	_, stop := e.start()
	first, held := alertID("digest-first"), alertID("digest-held")
	e.append(routedEvent(first, eventsv1.Category_CATEGORY_URGENT, step(0, []eventsv1.Channel{chEmail}, role("digest"))))
	e.waitEvents(first, "NotificationSent", 1)
	release := make(chan struct{})
	inData := holdSends(e, chEmail, release, false)
	e.append(routedEvent(held, eventsv1.Category_CATEGORY_URGENT, step(0, []eventsv1.Channel{chEmail}, role("digest"))))
	e.waitEvents(held, "NotificationDeferred", 1)
	waitHeld(t, inData) // the digest is on the wire
	stop()
	stopHolding(e)
	close(release)

	_, _ = e.start()
	digest := e.waitEvents(held, "DigestSent", 1)[0].GetDigestSent()
	sent := e.waitEvents(held, "NotificationSent", 1)[0].GetNotificationSent()
	require.Equal(t, uint32(2), sent.GetAttempt())
	var resends []uint32
	for _, ev := range e.events(held, "NotificationAttempted") {
		a := ev.GetNotificationAttempted()
		require.Equal(t, digest.GetDigestId(), a.GetDigestId())
		resends = append(resends, a.GetInDoubtResend())
	}
	require.Equal(t, []uint32{0, 1}, resends, "the digest's attempts are on the timeline, the second a resend in doubt")
	keys := receivedKeys(t, e, chEmail, "digest@nhs.test", "")
	require.Len(t, keys, 3, "the first message, then the digest twice")
	want := "<" + digest.GetDigestId() + "@herald.invalid>"
	require.Equal(t, []string{want, want}, keys[1:], "the resent digest carries the same Message-ID")
}
