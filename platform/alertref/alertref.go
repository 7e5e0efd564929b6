// Package alertref makes the one reference people see for an alert: in
// every message (email subject and body, SMS, Teams, webhook), on the
// acknowledge page, in heraldctl and on the demo's web page. It has one
// format, HRD-XXXX-XXXX-XXXX (Crockford base32: no I, L, O or U, so it can
// be read over the phone), and it is keyed: an HMAC-SHA256 of the alert id
// under a configured secret. The alert id is itself a hash of the tenant,
// the accession number and the finding, which anyone could compute for
// every accession of a trust; without the key a reference cannot be
// matched back to an accession.
//
// Every service that shows references (notification, acknowledgement, the
// console) is configured with the same reference key, a secret of its own:
// acknowledge links are signed with an asymmetric key that only
// notification holds, so there is no shared secret to derive it from, and
// references quoted in notes and phone calls stay the same when link keys
// rotate.
package alertref

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"strings"
)

// MinKeyLen is the shortest reference key accepted, in bytes.
const MinKeyLen = 32

// Prefix starts every reference.
const Prefix = "HRD-"

const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ" // Crockford base32

// Key makes references. The zero Key is not usable.
type Key struct{ secret []byte }

// New returns the key of a configured secret of at least MinKeyLen bytes.
func New(secret []byte) (Key, error) {
	if len(secret) < MinKeyLen {
		return Key{}, fmt.Errorf("reference key must be at least %d bytes, got %d", MinKeyLen, len(secret))
	}
	return Key{secret: append([]byte(nil), secret...)}, nil
}

// Ref returns the reference of an alert: HRD- and twelve base32 characters
// (60 bits of the HMAC) in groups of four. It is deterministic: the same
// key and alert id always give the same reference.
func (k Key) Ref(alertID string) string {
	m := hmac.New(sha256.New, k.secret)
	m.Write([]byte(alertID))
	sum := m.Sum(nil)
	var b strings.Builder
	b.WriteString(Prefix)
	var acc uint64
	for _, c := range sum[:8] {
		acc = acc<<8 | uint64(c)
	}
	for i := 0; i < 12; i++ {
		if i > 0 && i%4 == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(alphabet[(acc>>(59-5*uint(i)))&31])
	}
	return b.String()
}

// Is reports whether s has the shape of a reference (case-insensitive, as
// people type it).
func Is(s string) bool {
	s = strings.ToUpper(strings.TrimSpace(s))
	if len(s) != len(Prefix)+14 || !strings.HasPrefix(s, Prefix) {
		return false
	}
	for i, c := range s[len(Prefix):] {
		if i == 4 || i == 9 {
			if c != '-' {
				return false
			}
			continue
		}
		if !strings.ContainsRune(alphabet, c) {
			return false
		}
	}
	return true
}
