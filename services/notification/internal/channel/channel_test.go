package channel

import (
	"context"
	"errors"
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
