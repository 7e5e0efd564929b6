package channel

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

func TestHTTPStatusClassification(t *testing.T) {
	tests := []struct {
		status        int
		wantErr       bool
		wantPermanent bool
	}{
		{200, false, false}, {201, false, false}, {204, false, false},
		{400, true, true}, {401, true, true}, {403, true, true}, {404, true, true}, {410, true, true},
		{408, true, false}, {425, true, false}, {429, true, false},
		{500, true, false}, {502, true, false}, {503, true, false},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			err := httpStatusError("p", tt.status)
			require.Equal(t, tt.wantErr, err != nil)
			require.Equal(t, tt.wantPermanent, IsPermanent(err))
		})
	}
}

func TestSMTPClassificationDropsServerText(t *testing.T) {
	tests := []struct {
		name          string
		err           error
		wantPermanent bool
	}{
		{"given 550 then permanent", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user a@b.test"}, true},
		{"given 451 then transient", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later a@b.test"}, false},
		{"given a network error then transient", errors.New("connection reset"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := classifySMTP("rcpt", tt.err)
			require.Equal(t, tt.wantPermanent, IsPermanent(err))
			require.NotContains(t, err.Error(), "a@b.test")
		})
	}
}

func TestWebhookSignsAndKeepsAddressOutOfErrors(t *testing.T) {
	secret := []byte("s")
	var got *http.Request
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		body = make([]byte, r.ContentLength)
		_, _ = r.Body.Read(body)
		w.WriteHeader(http.StatusGone)
	}))
	defer srv.Close()
	w := NewWebhook(secret, nil, func() time.Time { return time.Unix(1700000000, 0) })
	_, err := w.Send(context.Background(), Message{ID: "n1", Channel: eventsv1.Channel_CHANNEL_WEBHOOK, Address: srv.URL + "/secret-path", Body: "x"})
	require.True(t, IsPermanent(err))
	require.NotContains(t, err.Error(), "secret-path")
	require.Equal(t, "n1", got.Header.Get(HeaderIdempotencyKey))
	require.Equal(t, "1700000000", got.Header.Get(HeaderTimestamp))
	require.True(t, VerifySignature(secret, "1700000000", body, got.Header.Get(HeaderSignature)))
	require.False(t, VerifySignature([]byte("other"), "1700000000", body, got.Header.Get(HeaderSignature)))

	// An unreachable address: transient, address not in the error.
	srv.Close()
	_, err = w.Send(context.Background(), Message{ID: "n1", Address: srv.URL + "/secret-path"})
	require.Error(t, err)
	require.False(t, IsPermanent(err))
	require.False(t, strings.Contains(err.Error(), "secret-path"), "got %q", err)
}

func TestNotifyShape(t *testing.T) {
	var req map[string]any
	var auth, path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth, path = r.Header.Get("Authorization"), r.URL.Path
		_ = json.NewDecoder(r.Body).Decode(&req)
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"740e5834-3a29-46b4-9a6f-16142fde533a","reference":"n1"}`))
	}))
	defer srv.Close()
	n := NewNotify(NotifyConfig{BaseURL: srv.URL + "/", APIKey: "k", TemplateID: "tmpl"})
	id, err := n.Send(context.Background(), Message{ID: "n1", Address: "+447700900000", Body: "hello"})
	require.NoError(t, err)
	require.Equal(t, "740e5834-3a29-46b4-9a6f-16142fde533a", id)
	require.Equal(t, "/v2/notifications/sms", path)
	require.Equal(t, "Bearer k", auth)
	require.Equal(t, map[string]any{"phone_number": "+447700900000", "template_id": "tmpl",
		"personalisation": map[string]any{"body": "hello"}, "reference": "n1"}, req)
}

func TestTeamsShape(t *testing.T) {
	var card map[string]any
	var key string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key = r.Header.Get(HeaderIdempotencyKey)
		_ = json.NewDecoder(r.Body).Decode(&card)
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	_, err := NewTeams(nil).Send(context.Background(), Message{ID: "n1", Address: srv.URL, Subject: "S", Body: "B"})
	require.Error(t, err)
	require.False(t, IsPermanent(err), "429 is retried")
	require.Equal(t, "MessageCard", card["@type"])
	require.Equal(t, "B", card["text"])
	require.Equal(t, "n1", key, "the notification id is the idempotency key, the same on a resend in doubt")
}

func TestCaptureAndLog(t *testing.T) {
	var buf strings.Builder
	logCh := NewLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	c := NewCapture(logCh)
	sub := c.Subscribe(1)
	_, err := c.Send(context.Background(), Message{ID: "n1", Channel: eventsv1.Channel_CHANNEL_SMS, Address: "+447700900999", Body: "secret link"})
	require.NoError(t, err)
	require.Len(t, c.ByChannel(eventsv1.Channel_CHANNEL_SMS), 1)
	require.Equal(t, "n1", (<-sub).ID)
	require.Contains(t, buf.String(), `"notification_id":"n1"`)
	require.NotContains(t, buf.String(), "+447700900999")
	require.NotContains(t, buf.String(), "secret link")
}
