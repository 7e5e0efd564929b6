package acklink_test

import (
	"bytes"
	"encoding/base64"
	"errors"
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

	// The signature's last character carries two unused bits: flipping one
	// of them spells the same bytes another way.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, sig[len(sig)-1])
	respelled := sig[:len(sig)-1] + string(alphabet[last^1])

	tests := []struct {
		name   string
		secret []byte
		token  string
		now    time.Time
		want   error
	}{
		{"line break in the signature", secret, payload + "." + sig[:10] + "\n" + sig[10:], now, acklink.ErrMalformed},
		{"line break in the payload", secret, payload[:10] + "\r\n" + payload[10:] + "." + sig, now, acklink.ErrMalformed},
		{"signature's unused bits set", secret, payload + "." + respelled, now, acklink.ErrMalformed},
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

// FuzzVerify: a token verifies only if it is, byte for byte, the signing
// of the claims it yields, and those claims are ones the fuzz signed. A
// forgery (a payload or signature the secret did not make) or another
// spelling of a signed token (base64 written another way) fails it.
func FuzzVerify(f *testing.F) {
	signed := map[acklink.Claims]bool{}
	seed := func(c acklink.Claims) {
		tok, err := acklink.Sign(secret, c)
		require.NoError(f, err)
		signed[c] = true
		f.Add(tok)
	}
	seed(claims())
	other := claims()
	other.TokenID, other.NotificationID, other.Step = "tok-2", "", 0
	seed(other)
	tok, _ := acklink.Sign(secret, claims())
	f.Add(strings.Replace(tok, ".", ".\n", 1)) // another spelling: must not verify
	f.Add("")
	f.Add(".")
	f.Add("eyJ9.AAAA")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := acklink.Verify(secret, token, now)
		if err != nil {
			require.Equal(t, acklink.Claims{}, c, "claims returned with error %v", err)
			if !errors.Is(err, acklink.ErrMalformed) && !errors.Is(err, acklink.ErrBadSignature) && !errors.Is(err, acklink.ErrExpired) {
				t.Fatalf("Verify(%q): got error %v, want one of the package's errors", token, err)
			}
			return
		}
		if !signed[c] {
			t.Fatalf("Verify(%q) accepted claims that were never signed: %+v", token, c)
		}
		canonical, serr := acklink.Sign(secret, c)
		require.NoError(t, serr)
		if token != canonical {
			t.Fatalf("Verify accepted %q, another spelling of the token %q", token, canonical)
		}
	})
}
