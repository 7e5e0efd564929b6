// Package eventsign signs the records a Herald service appends to the event
// log and verifies them where they are read (issue #20, item 7: forged
// events).
//
// Kafka ACLs refuse a record from a principal that is not Herald's; this is
// the second wall, for a Herald principal (or its stolen credentials) that
// appends what it should not. Each service identity (intake, rules,
// notification, acknowledgement) holds an Ed25519 private key and signs
// every record it writes. The signature covers the topic, the key and the
// value (Message), so a signed record cannot be replayed onto another topic
// or under another alert, nor its value altered. It travels in the record
// header HeaderSignature as
//
//	kid "." base64url(Ed25519(Message(topic, key, value)))
//
// where kid names the key (KeyID: the first 12 bytes of the SHA-256 of the
// public key, base64url). Readers hold a KeySet: the public keys, each
// bound to the one service identity that holds its private half (the
// key-set file, LoadKeySet). A reader accepts a record only when
//
//   - it carries a signature (else ErrUnsigned),
//   - by a key of the set (else ErrUnknownKey; a retired key is removed
//     from the set, so the kid also lets keys rotate without a flag day),
//   - that verifies over this topic, key and value (else ErrBadSignature),
//   - and, for an event, the key's service may produce its type (Producers,
//     the one table of who may append what; else ErrNotAllowed: only
//     acknowledgement appends AlertAcknowledged).
//
// A record that fails goes to the dead-letter topic with the reason and is
// never applied (platform/eventlog). Nothing here holds patient data: the
// signature is over the bytes, and errors name ids and types only.
package eventsign

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// HeaderSignature is the record header holding the signature.
const HeaderSignature = "herald-sig"

// domain separates these signatures from any other use of a key.
const domain = "herald-event-sig-v1"

// Errors of KeySet.Verify and Allowed. They wrap ErrRefused, so a caller
// can tell a refused record from a broken reader.
var (
	// ErrRefused is wrapped by every refusal below.
	ErrRefused = errors.New("event signature refused")
	// ErrUnsigned: the record has no signature header.
	ErrUnsigned = fmt.Errorf("%w: unsigned record", ErrRefused)
	// ErrMalformed: the signature header is not of the shape above.
	ErrMalformed = fmt.Errorf("%w: malformed signature header", ErrRefused)
	// ErrUnknownKey: the signature names a key the set does not hold
	// (retired, or never one of this deployment's).
	ErrUnknownKey = fmt.Errorf("%w: unknown signing key", ErrRefused)
	// ErrBadSignature: the signature does not verify over this topic, key
	// and value (altered, moved, or signed with another key).
	ErrBadSignature = fmt.Errorf("%w: bad signature", ErrRefused)
	// ErrNotAllowed: the signer's service may not produce the event's type.
	ErrNotAllowed = fmt.Errorf("%w: signer may not produce this event type", ErrRefused)
)

var enc = base64.RawURLEncoding

// KeyID returns the id of a public key: the first 12 bytes of its SHA-256,
// base64url (16 characters).
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return enc.EncodeToString(sum[:12])
}

// Message returns the bytes signed for a record: a domain string, then the
// topic, the key and the value, each preceded by its length (so no two
// records share a message).
func Message(topic string, key, value []byte) []byte {
	b := make([]byte, 0, len(domain)+12+len(topic)+len(key)+len(value))
	b = append(b, domain...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(topic)))
	b = append(b, topic...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(key)))
	b = append(b, key...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(value)))
	return append(b, value...)
}

// Signer signs records with one service's private key.
type Signer struct {
	kid string
	key ed25519.PrivateKey
}

// NewSigner returns a signer of key.
func NewSigner(key ed25519.PrivateKey) (*Signer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("eventsign: private key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	return &Signer{kid: KeyID(key.Public().(ed25519.PublicKey)), key: key}, nil
}

// KeyID returns the id of the signer's key.
func (s *Signer) KeyID() string { return s.kid }

// Public returns the signer's public key.
func (s *Signer) Public() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// Sign returns the value of HeaderSignature for a record.
func (s *Signer) Sign(topic string, key, value []byte) []byte {
	sig := ed25519.Sign(s.key, Message(topic, key, value))
	out := make([]byte, 0, len(s.kid)+1+enc.EncodedLen(len(sig)))
	out = append(out, s.kid...)
	out = append(out, '.')
	return enc.AppendEncode(out, sig)
}

// Key is a trusted public key and the service identity holding its private
// half.
type Key struct {
	ID      string
	Service string
	Public  ed25519.PublicKey
}

// KeySet is the public keys a reader trusts, by key id. It is immutable
// after NewKeySet and safe for concurrent use.
type KeySet struct {
	keys map[string]Key
}

// NewKeySet returns a set of keys. Each key's service must be a producer
// the Producers table knows, and no key id may appear twice.
func NewKeySet(keys ...Key) (*KeySet, error) {
	ks := &KeySet{keys: map[string]Key{}}
	for _, k := range keys {
		if len(k.Public) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("eventsign: key of %q has %d bytes, want an Ed25519 public key", k.Service, len(k.Public))
		}
		if !slices.Contains(Services(), k.Service) {
			return nil, fmt.Errorf("eventsign: key %s names service %q, which produces no events (want one of %s)", KeyID(k.Public), k.Service, strings.Join(Services(), ", "))
		}
		id := KeyID(k.Public)
		if k.ID != "" && k.ID != id {
			return nil, fmt.Errorf("eventsign: key of %q is listed as kid %q but its id is %q", k.Service, k.ID, id)
		}
		if prev, dup := ks.keys[id]; dup && prev.Service != k.Service {
			return nil, fmt.Errorf("eventsign: key %s is bound to both %q and %q", id, prev.Service, k.Service)
		}
		k.ID = id
		ks.keys[id] = k
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("eventsign: the key set holds no key")
	}
	return ks, nil
}

// Keys returns the set's keys, ordered by service then id.
func (ks *KeySet) Keys() []Key {
	out := make([]Key, 0, len(ks.keys))
	for _, k := range ks.keys {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b Key) int {
		if c := strings.Compare(a.Service, b.Service); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Verify checks header (the value of HeaderSignature, nil when absent)
// over the record and returns the service identity that signed it. The
// error wraps ErrRefused and one of the errors above.
func (ks *KeySet) Verify(topic string, key, value, header []byte) (string, error) {
	if len(header) == 0 {
		return "", ErrUnsigned
	}
	kid, sig, ok := strings.Cut(string(header), ".")
	if !ok || kid == "" {
		return "", ErrMalformed
	}
	k, ok := ks.keys[kid]
	if !ok {
		return "", fmt.Errorf("%w (kid %q)", ErrUnknownKey, kid)
	}
	raw, err := enc.DecodeString(sig)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return "", ErrMalformed
	}
	if !ed25519.Verify(k.Public, Message(topic, key, value), raw) {
		return "", fmt.Errorf("%w (kid %q of %s)", ErrBadSignature, kid, k.Service)
	}
	return k.Service, nil
}
