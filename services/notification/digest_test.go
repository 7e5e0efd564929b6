package notification_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/alertref"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// A person over the rate limit is never left waiting silently: the
// messages held back are NotificationDeferred on each alert's timeline and
// go out soon, merged into one digest email (SMTP) that lists every
// reference with its acknowledge link; each alert then has DigestSent and
// NotificationSent (its step counts as told). A CRITICAL alert is never held
// back. (Before: the held-back messages waited out the whole window, an
// hour here, with nothing on the timeline, and outlived their steps.)
func TestAPersonOverTheRateLimitGetsOneDigestListingTheReferences(t *testing.T) {
	e := newEnv(t, nil)
	e.cfg.RateLimitMax, e.cfg.RateLimitWindow, e.cfg.RateLimitDigestAfter = 2, time.Hour, time.Second
	e.cfg.NotifyCallbackToken = notifyCallbackToken
	e.rules.set("busy", person("p-busy", cp(chEmail, "busy@nhs.test")))
	svc, _ := e.start()

	var ids []string
	for i := range 5 {
		id := alertID("busy-" + string(rune('a'+i)))
		ids = append(ids, id)
		e.append(routedEvent(id, eventsv1.Category_CATEGORY_URGENT, step(0, []eventsv1.Channel{chEmail}, role("busy"))))
	}
	critical := alertID("busy-critical")

	// Every alert gets its message: two at once, three in one digest.
	deferred := map[string]*eventsv1.NotificationDeferred{}
	digestID := ""
	for _, id := range ids {
		e.waitEvents(id, "NotificationSent", 1)
		if d := e.events(id, "NotificationDeferred"); len(d) > 0 {
			deferred[id] = d[0].GetNotificationDeferred()
		}
	}
	require.Len(t, deferred, 3, "three messages over the limit of two are deferred, on their timelines")
	for id, d := range deferred {
		require.Contains(t, d.GetReason(), "rate limit")
		require.NotNil(t, d.GetDigestAt())
		digest := e.waitEvents(id, "DigestSent", 1)[0].GetDigestSent()
		require.Equal(t, uint32(3), digest.GetReferences())
		require.Equal(t, d.GetNotificationId(), digest.GetNotificationId())
		require.Equal(t, "p-busy", digest.GetRecipient().GetPersonId())
		digestID = digest.GetDigestId()
	}

	// The CRITICAL alert to the same person is sent at once, not deferred.
	e.append(routedEvent(critical, eventsv1.Category_CATEGORY_CRITICAL, step(0, []eventsv1.Channel{chEmail}, role("busy"))))
	e.waitEvents(critical, "NotificationSent", 1)
	require.Empty(t, e.events(critical, "NotificationDeferred"))
	e.waitIdle()

	mails := e.smtp.to("busy@nhs.test")
	require.Len(t, mails, 4, "two messages, one digest, one critical message")
	var digests []mail
	for _, m := range mails {
		if strings.Contains(m.Data, "alerts need your attention") {
			digests = append(digests, m)
		}
	}
	require.Len(t, digests, 1)
	refs, err := alertref.New([]byte(referenceKey))
	require.NoError(t, err)
	for id := range deferred {
		require.Contains(t, digests[0].Data, refs.Ref(id), "the digest lists each reference")
	}
	require.Equal(t, 3, strings.Count(digests[0].Data, "https://herald.test/ack/"), "one acknowledge link per alert")
	requireNoSecrets(t, digests[0].Data)

	// The digest bounces (Notify's callback, its reference the digest's
	// id): each message it merged failed, and with no contact point left
	// each alert's step fails at once.
	body, err := json.Marshal(notifyCallback{ID: "notify-d", Reference: digestID, To: "busy@nhs.test", Status: "permanent-failure", NotificationType: "email"})
	require.NoError(t, err)
	req, _ := http.NewRequest(http.MethodPost, "http://"+svc.Addrs()["receipts"]+"/v1/receipts/notify", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+notifyCallbackToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	for id := range deferred {
		require.Eventually(t, func() bool {
			for _, ev := range e.events(id, "NotificationFailed") {
				if ev.GetNotificationFailed().GetStepFailed() {
					return true
				}
			}
			return false
		}, 30*time.Second, 100*time.Millisecond, "the bounced digest fails the step of alert %s", id)
	}
	requireNoSecrets(t, e.logs.String(), "busy@nhs.test")
}
