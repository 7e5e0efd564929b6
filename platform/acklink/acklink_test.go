package acklink_test

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/acklink"
	"github.com/stretchr/testify/require"
)

var (
	secret = bytes.Repeat([]byte("k"), 32)
	now    = time.Date(2026, 11, 29, 15, 0, 0, 0, time.UTC)
)

func claims() acklink.Claims {
	return acklink.Claims{
		TokenID:        "tok-1",
		AlertID:        "alert-1",
		NotificationID: "notif-1",
		PersonID:       "person-1",
		Step:           2,
		ExpiresAt:      now.Add(time.Hour),
	}
}

func TestRoundTrip(t *testing.T) {
	tok, err := acklink.Sign(secret, claims())
	require.NoError(t, err)
	require.NotContains(t, tok, "/")
	require.NotContains(t, tok, "+")
	require.NotContains(t, tok, "=")
	got, err := acklink.Verify(secret, tok, now)
	require.NoError(t, err)
	require.Equal(t, claims(), got)
}

func TestVerifyRejects(t *testing.T) {
	tok, err := acklink.Sign(secret, claims())
	require.NoError(t, err)
	payload, sig, _ := strings.Cut(tok, ".")

	raw, err := base64.RawURLEncoding.DecodeString(payload)
	require.NoError(t, err)
	tampered := base64.RawURLEncoding.EncodeToString(bytes.Replace(raw, []byte("person-1"), []byte("person-2"), 1))

	flipped := []byte(sig)
	if flipped[0] == 'A' {
		flipped[0] = 'B'
	} else {
		flipped[0] = 'A'
	}

	tests := []struct {
		name   string
		secret []byte
		token  string
		now    time.Time
		want   error
	}{
		{"tampered payload", secret, tampered + "." + sig, now, acklink.ErrBadSignature},
		{"tampered signature", secret, payload + "." + string(flipped), now, acklink.ErrBadSignature},
		{"wrong secret", bytes.Repeat([]byte("x"), 32), tok, now, acklink.ErrBadSignature},
		{"expired exactly", secret, tok, now.Add(time.Hour), acklink.ErrExpired},
		{"expired later", secret, tok, now.Add(48 * time.Hour), acklink.ErrExpired},
		{"empty", secret, "", now, acklink.ErrMalformed},
		{"no dot", secret, payload, now, acklink.ErrMalformed},
		{"two dots", secret, tok + ".x", now, acklink.ErrMalformed},
		{"bad base64", secret, "!!!." + sig, now, acklink.ErrMalformed},
		{"short signature", secret, payload + ".AAAA", now, acklink.ErrMalformed},
		{"huge", secret, strings.Repeat("a", 5000), now, acklink.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := acklink.Verify(tt.secret, tt.token, tt.now)
			require.ErrorIs(t, err, tt.want)
			require.Equal(t, acklink.Claims{}, got)
		})
	}
}

func TestSignRejects(t *testing.T) {
	tests := []struct {
		name   string
		secret []byte
		mutate func(*acklink.Claims)
		want   string
	}{
		{"short secret", []byte("short"), func(*acklink.Claims) {}, "secret"},
		{"no token id", secret, func(c *acklink.Claims) { c.TokenID = "" }, "TokenID"},
		{"no alert id", secret, func(c *acklink.Claims) { c.AlertID = "" }, "AlertID"},
		{"no person id", secret, func(c *acklink.Claims) { c.PersonID = "" }, "PersonID"},
		{"no expiry", secret, func(c *acklink.Claims) { c.ExpiresAt = time.Time{} }, "ExpiresAt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := claims()
			tt.mutate(&c)
			_, err := acklink.Sign(tt.secret, c)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func FuzzVerify(f *testing.F) {
	tok, err := acklink.Sign(secret, claims())
	require.NoError(f, err)
	f.Add(tok)
	f.Add("")
	f.Add(".")
	f.Add("eyJ9.AAAA")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := acklink.Verify(secret, token, now)
		if err == nil {
			// Only a token signed with the secret verifies.
			again, serr := acklink.Sign(secret, c)
			require.NoError(t, serr)
			_, verr := acklink.Verify(secret, again, now)
			require.NoError(t, verr)
		}
	})
}
