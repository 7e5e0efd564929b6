// Package acklink signs and verifies acknowledge-link tokens: the opaque,
// URL-safe token that a notification carries in <ack-base-url>/ack/<token>.
//
// A token is base64url(payload) "." base64url(HMAC-SHA256(secret, payload)),
// where payload is a small JSON object of the Claims. The token holds ids
// only (token, alert, notification, person, step) and an expiry: never
// patient data. Tokens are tamper-evident and expiring; single use is
// enforced by the acknowledgement service (it records the token id once).
//
// Tokens are bearer secrets: never log them or put them in span attributes.
package acklink

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// MinSecretLen is the shortest accepted signing secret, in bytes.
const MinSecretLen = 32

// maxTokenLen bounds the input Verify will look at, so a hostile URL cannot
// make it decode megabytes.
const maxTokenLen = 2048

// Errors returned by Verify. They are distinct so that the HTTP edge can say
// "this link has expired" without revealing anything else.
var (
	// ErrMalformed means the token is not of the acklink shape.
	ErrMalformed = errors.New("acklink: malformed token")
	// ErrBadSignature means the token was altered or signed with another secret.
	ErrBadSignature = errors.New("acklink: bad signature")
	// ErrExpired means the token was valid but its expiry has passed.
	ErrExpired = errors.New("acklink: token expired")
)

// Claims is what a token asserts: that PersonID was sent NotificationID for
// step Step of AlertID, and may act on it until ExpiresAt.
type Claims struct {
	// TokenID identifies this token; the acknowledgement service records it
	// to make the token single use.
	TokenID        string
	AlertID        string
	NotificationID string
	PersonID       string
	Step           uint32
	ExpiresAt      time.Time
}

// wire is the JSON form of Claims: short names keep links short.
type wire struct {
	TokenID        string `json:"t"`
	AlertID        string `json:"a"`
	NotificationID string `json:"n,omitempty"`
	PersonID       string `json:"p"`
	Step           uint32 `json:"s"`
	ExpiresAt      int64  `json:"e"` // Unix seconds
}

var enc = base64.RawURLEncoding

// Sign returns the token for c. It fails if the secret is shorter than
// MinSecretLen or a required claim (TokenID, AlertID, PersonID, ExpiresAt)
// is missing.
func Sign(secret []byte, c Claims) (string, error) {
	if len(secret) < MinSecretLen {
		return "", fmt.Errorf("acklink: secret is %d bytes, need at least %d", len(secret), MinSecretLen)
	}
	switch {
	case c.TokenID == "":
		return "", errors.New("acklink: claims.TokenID is empty")
	case c.AlertID == "":
		return "", errors.New("acklink: claims.AlertID is empty")
	case c.PersonID == "":
		return "", errors.New("acklink: claims.PersonID is empty")
	case c.ExpiresAt.IsZero():
		return "", errors.New("acklink: claims.ExpiresAt is zero")
	}
	payload, err := json.Marshal(wire{
		TokenID:        c.TokenID,
		AlertID:        c.AlertID,
		NotificationID: c.NotificationID,
		PersonID:       c.PersonID,
		Step:           c.Step,
		ExpiresAt:      c.ExpiresAt.Unix(),
	})
	if err != nil {
		return "", fmt.Errorf("acklink: encode claims: %w", err)
	}
	return enc.EncodeToString(payload) + "." + enc.EncodeToString(mac(secret, payload)), nil
}

// Verify checks the token's signature under secret and its expiry against
// now, and returns its claims. Errors wrap ErrMalformed, ErrBadSignature or
// ErrExpired. A token is expired when now is at or after ExpiresAt. Only the
// exact text Sign returned verifies: another base64 spelling of the same
// bytes is malformed.
func Verify(secret []byte, token string, now time.Time) (Claims, error) {
	if len(secret) == 0 {
		return Claims{}, errors.New("acklink: empty secret")
	}
	if len(token) == 0 || len(token) > maxTokenLen {
		return Claims{}, ErrMalformed
	}
	p64, s64, ok := strings.Cut(token, ".")
	if !ok || strings.Contains(s64, ".") {
		return Claims{}, ErrMalformed
	}
	payload, ok := decodeCanonical(p64)
	if !ok {
		return Claims{}, ErrMalformed
	}
	sig, ok := decodeCanonical(s64)
	if !ok || len(sig) != sha256.Size {
		return Claims{}, ErrMalformed
	}
	if !hmac.Equal(sig, mac(secret, payload)) {
		return Claims{}, ErrBadSignature
	}
	var w wire
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Claims{}, ErrMalformed
	}
	if w.TokenID == "" || w.AlertID == "" || w.PersonID == "" || w.ExpiresAt == 0 {
		return Claims{}, ErrMalformed
	}
	c := Claims{
		TokenID:        w.TokenID,
		AlertID:        w.AlertID,
		NotificationID: w.NotificationID,
		PersonID:       w.PersonID,
		Step:           w.Step,
		ExpiresAt:      time.Unix(w.ExpiresAt, 0).UTC(),
	}
	if !now.Before(c.ExpiresAt) {
		return Claims{}, ErrExpired
	}
	return c, nil
}

// decodeCanonical decodes s only if it is the one way enc writes its bytes.
// The decoder also takes line breaks and non-zero trailing bits; without the
// check one signing would have many spellings, and anything that compares or
// records tokens as strings would take them for different tokens.
func decodeCanonical(s string) ([]byte, bool) {
	b, err := enc.DecodeString(s)
	if err != nil || enc.EncodeToString(b) != s {
		return nil, false
	}
	return b, true
}

func mac(secret, payload []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write(payload)
	return h.Sum(nil)
}
