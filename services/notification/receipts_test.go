package notification_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/eventlog"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/notification/internal/channel"
)

const notifyCallbackToken = "notify-callback-token-for-tests"

// notifyCallback is the body GOV.UK Notify posts to a service's
// delivery-status callback URL.
type notifyCallback struct {
	ID               string `json:"id"`
	Reference        string `json:"reference"`
	To               string `json:"to"`
	Status           string `json:"status"`
	CreatedAt        string `json:"created_at"`
	CompletedAt      string `json:"completed_at"`
	SentAt           string `json:"sent_at"`
	NotificationType string `json:"notification_type"`
	TemplateID       string `json:"template_id"`
	TemplateVersion  int    `json:"template_version"`
}

// A provider's failure report counts as a failed send: an email the SMTP
// server accepted and then bounced (GOV.UK Notify's callback, bearer
// token, status permanent-failure) moves the person on to their next
// contact point at once (the SMS goes out), and a failed SMS of a person
// with nothing left fails the step at once (step_failed, so escalation
// moves on), rather than waiting for the step's timeout. Herald's own
// signed receipt with "bounced" does the same. A repeated report changes
// nothing; a wrong token changes nothing.
func TestAFailureReceiptMovesTheStepOnAtOnce(t *testing.T) {
	e := newEnv(t, nil)
	e.cfg.NotifyCallbackToken = notifyCallbackToken
	fallback := alertID("bounce-fallback")
	e.rules.set("fb", person("p-fb", cp(chEmail, "bounces@nhs.test"), cp(chSMS, "+447700900444")))
	alone := alertID("bounce-alone")
	e.rules.set("alone", person("p-alone", cp(chSMS, "+447700900555")))
	hmacd := alertID("bounce-hmac")
	e.rules.set("hmacd", person("p-hmac", cp(chEmail, "hmac-bounce@nhs.test")))
	svc, _ := e.start()
	receipts := "http://" + svc.Addrs()["receipts"]

	notify := func(token string, cb notifyCallback) int {
		t.Helper()
		body, err := json.Marshal(cb)
		require.NoError(t, err)
		req, _ := http.NewRequest(http.MethodPost, receipts+"/v1/receipts/notify", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)

	e.append(routedEvent(fallback, eventsv1.Category_CATEGORY_URGENT, step(0, []eventsv1.Channel{chEmail, chSMS}, role("fb"))),
		routedEvent(alone, eventsv1.Category_CATEGORY_URGENT, step(0, []eventsv1.Channel{chSMS}, role("alone"))),
		routedEvent(hmacd, eventsv1.Category_CATEGORY_URGENT, step(0, []eventsv1.Channel{chEmail}, role("hmacd"))))

	// The email is accepted by the SMTP server: sent, not the SMS.
	sent := e.waitEvents(fallback, "NotificationSent", 1)
	require.Equal(t, chEmail, sent[0].GetNotificationSent().GetChannel())
	require.Len(t, e.smtp.to("bounces@nhs.test"), 1)
	emailNID := sent[0].GetNotificationSent().GetNotificationId()
	bounce := notifyCallback{ID: "notify-1", Reference: emailNID, To: "bounces@nhs.test", Status: "permanent-failure",
		CreatedAt: now, CompletedAt: now, SentAt: now, NotificationType: "email", TemplateID: "tmpl-1", TemplateVersion: 1}

	require.Equal(t, http.StatusUnauthorized, notify("wrong-token", bounce))
	require.Equal(t, http.StatusNoContent, notify(notifyCallbackToken, bounce))
	// The bounce is on the timeline, and the person's SMS goes out at once.
	failed := e.waitEvents(fallback, "NotificationFailed", 1)
	f := failed[0].GetNotificationFailed()
	require.Equal(t, emailNID, f.GetNotificationId())
	require.True(t, f.GetPermanent())
	require.Contains(t, f.GetReason(), "permanent-failure")
	sent = e.waitEvents(fallback, "NotificationSent", 2)
	require.Equal(t, chSMS, sent[1].GetNotificationSent().GetChannel())
	require.Len(t, smsTo(e, "+447700900444"), 1)
	require.Equal(t, http.StatusNoContent, notify(notifyCallbackToken, bounce), "a repeated report is harmless")

	// The only contact point fails: the recipient, and so the step, failed.
	sent = e.waitEvents(alone, "NotificationSent", 1)
	smsNID := sent[0].GetNotificationSent().GetNotificationId()
	require.Equal(t, http.StatusNoContent, notify(notifyCallbackToken, notifyCallback{ID: "notify-2", Reference: smsNID,
		To: "+447700900555", Status: "temporary-failure", NotificationType: "sms", CreatedAt: now}))
	var stepFailed *eventsv1.NotificationFailed
	require.Eventually(t, func() bool {
		for _, ev := range e.events(alone, "NotificationFailed") {
			if ev.GetNotificationFailed().GetStepFailed() {
				stepFailed = ev.GetNotificationFailed()
				return true
			}
		}
		return false
	}, 30*time.Second, 100*time.Millisecond, "the failed SMS fails the step")
	require.True(t, stepFailed.GetRecipientExhausted())
	require.Equal(t, uint32(0), stepFailed.GetStep())

	// Herald's own signed receipt: "bounced" counts the same.
	sent = e.waitEvents(hmacd, "NotificationSent", 1)
	body := []byte(`{"reference":"` + sent[0].GetNotificationSent().GetNotificationId() + `","id":"relay-1","status":"bounced"}`)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, _ := http.NewRequest(http.MethodPost, receipts+"/v1/receipts", bytes.NewReader(body))
	req.Header.Set(channel.HeaderTimestamp, ts)
	req.Header.Set(channel.HeaderSignature, channel.Sign([]byte(receiptSecret), ts, body))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Eventually(t, func() bool {
		for _, ev := range e.events(hmacd, "NotificationFailed") {
			if ev.GetNotificationFailed().GetStepFailed() {
				return true
			}
		}
		return false
	}, 30*time.Second, 100*time.Millisecond, "the bounced email fails the step")

	e.waitIdle()
	require.Len(t, e.events(fallback, "NotificationFailed"), 1, "the repeated report appended nothing")
	require.Equal(t, eventlog.ID(emailNID, "receipt", "permanent-failure"), failed[0].GetEventId())
	require.Len(t, e.smtp.to("bounces@nhs.test"), 1)
	require.Len(t, smsTo(e, "+447700900444"), 1)
	require.Len(t, smsTo(e, "+447700900555"), 1)
	requireNoSecrets(t, e.logs.String(), "bounces@nhs.test", "+447700900444", "+447700900555", "hmac-bounce@nhs.test", notifyCallbackToken)
}

// smsTo returns the SMS requests the Notify-shaped sink got for a number.
func smsTo(e *env, number string) []*recorded {
	var out []*recorded
	for _, r := range e.sink.on("/v2/notifications/sms") {
		if bytes.Contains(r.Body, []byte(`"`+number+`"`)) {
			out = append(out, r)
		}
	}
	return out
}
