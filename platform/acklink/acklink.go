// Package acklink signs and verifies acknowledge-link tokens: the opaque,
// URL-safe token that a notification carries in <ack-base-url>/ack/<token>.
//
// Links are signed asymmetrically. The notification service holds an
// Ed25519 private key and signs (Signer); the acknowledgement service holds
// only public keys and verifies (Verifier), so a leak of the
// acknowledgement service's configuration cannot mint links. A token is
//
//	kid "." base64url(payload) "." base64url(Ed25519(kid "." base64url(payload)))
//
// where kid names the signing key (KeyID: the first 12 bytes of the SHA-256
// of the public key, base64url) and payload is a small JSON object of the
// Claims. The key id lets keys rotate: the verifiers trust the old and the
// new public key while links signed with the old one are still alive
// (docs/deployment.md, "Acknowledge-link keys").
//
// The token holds ids only (token, alert, notification, person, step) and
// an expiry: never patient data. Tokens are tamper-evident and expiring;
// single use is enforced by the acknowledgement service (it records the
// token id once). Tokens are bearer secrets: never log them or put them in
// span attributes.
package acklink

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// maxTokenLen bounds the input Verify will look at, so a hostile URL cannot
// make it decode megabytes.
const maxTokenLen = 2048

// Errors returned by Verify. They are distinct so that the HTTP edge can say
// "this link has expired" without revealing anything else.
var (
	// ErrMalformed means the token is not of the acklink shape.
	ErrMalformed = errors.New("acklink: malformed token")
	// ErrUnknownKey means the token names a key the verifier does not
	// trust (retired, or never one of this deployment's).
	ErrUnknownKey = errors.New("acklink: unknown signing key")
	// ErrBadSignature means the token was altered or signed with another key.
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

// KeyID returns the key id of a public key: base64url of the first 12
// bytes of its SHA-256 (16 characters).
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return enc.EncodeToString(sum[:12])
}

// kidLen is the length of every KeyID.
const kidLen = 16

// Signer signs tokens with one private key.
type Signer struct {
	key ed25519.PrivateKey
	kid string
}

// NewSigner returns a signer of key.
func NewSigner(key ed25519.PrivateKey) (*Signer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("acklink: private key is %d bytes, want an Ed25519 key (%d)", len(key), ed25519.PrivateKeySize)
	}
	return &Signer{key: key, kid: KeyID(key.Public().(ed25519.PublicKey))}, nil
}

// KeyID is the id of the signer's key, carried in every token it signs.
func (s *Signer) KeyID() string { return s.kid }

// Public is the signer's public key (the one verifiers must trust).
func (s *Signer) Public() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// Sign returns the token for c. It fails if a required claim (TokenID,
// AlertID, PersonID, ExpiresAt) is missing.
func (s *Signer) Sign(c Claims) (string, error) {
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
	signed := s.kid + "." + enc.EncodeToString(payload)
	return signed + "." + enc.EncodeToString(ed25519.Sign(s.key, []byte(signed))), nil
}

// Verifier verifies tokens signed by any of a set of public keys.
type Verifier struct {
	keys map[string]ed25519.PublicKey
}

// NewVerifier returns a verifier trusting keys (at least one).
func NewVerifier(keys ...ed25519.PublicKey) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("acklink: no public keys to verify with")
	}
	v := &Verifier{keys: make(map[string]ed25519.PublicKey, len(keys))}
	for i, k := range keys {
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("acklink: public key %d is %d bytes, want an Ed25519 key (%d)", i+1, len(k), ed25519.PublicKeySize)
		}
		v.keys[KeyID(k)] = k
	}
	return v, nil
}

// KeyIDs lists the ids of the trusted keys (for a start-up log line).
func (v *Verifier) KeyIDs() []string {
	ids := make([]string, 0, len(v.keys))
	for id := range v.keys {
		ids = append(ids, id)
	}
	return ids
}

// Verify checks the token's signature under the key it names and its
// expiry against now, and returns its claims. Errors wrap ErrMalformed,
// ErrUnknownKey, ErrBadSignature or ErrExpired. A token is expired when now
// is at or after ExpiresAt. Only the exact text Sign returned verifies:
// another base64 spelling of the same bytes is malformed.
func (v *Verifier) Verify(token string, now time.Time) (Claims, error) {
	if len(token) == 0 || len(token) > maxTokenLen {
		return Claims{}, ErrMalformed
	}
	kid, rest, ok := strings.Cut(token, ".")
	if !ok || len(kid) != kidLen {
		return Claims{}, ErrMalformed
	}
	p64, s64, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(s64, ".") {
		return Claims{}, ErrMalformed
	}
	if _, ok := decodeCanonical(kid); !ok {
		return Claims{}, ErrMalformed
	}
	payload, ok := decodeCanonical(p64)
	if !ok {
		return Claims{}, ErrMalformed
	}
	sig, ok := decodeCanonical(s64)
	if !ok || len(sig) != ed25519.SignatureSize {
		return Claims{}, ErrMalformed
	}
	key, ok := v.keys[kid]
	if !ok {
		return Claims{}, ErrUnknownKey
	}
	if !ed25519.Verify(key, []byte(token[:len(kid)+1+len(p64)]), sig) {
		return Claims{}, ErrBadSignature
	}
	var w wire
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil || dec.More() {
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
