package acklink_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/acklink"
	"github.com/stretchr/testify/require"
)

var now = time.Date(2026, 11, 29, 15, 0, 0, 0, time.UTC)

// key derives a fixed key from a seed byte, so fuzz runs are repeatable.
func key(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func signer(t testing.TB, seed byte) *acklink.Signer {
	t.Helper()
	s, err := acklink.NewSigner(key(seed))
	require.NoError(t, err)
	return s
}

func verifier(t testing.TB, seeds ...byte) *acklink.Verifier {
	t.Helper()
	var pubs []ed25519.PublicKey
	for _, s := range seeds {
		pubs = append(pubs, key(s).Public().(ed25519.PublicKey))
	}
	v, err := acklink.NewVerifier(pubs...)
	require.NoError(t, err)
	return v
}

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
	s := signer(t, 1)
	tok, err := s.Sign(claims())
	require.NoError(t, err)
	require.NotContains(t, tok, "/")
	require.NotContains(t, tok, "+")
	require.NotContains(t, tok, "=")
	require.True(t, strings.HasPrefix(tok, s.KeyID()+"."), "the token names its key")
	got, err := verifier(t, 1).Verify(tok, now)
	require.NoError(t, err)
	require.Equal(t, claims(), got)
}

// TestKeyRotation: a verifier trusting the old and the new key accepts
// links of both; once the old key is retired its links are refused as of
// an unknown key, and the new key's links still verify.
func TestKeyRotation(t *testing.T) {
	oldTok, err := signer(t, 1).Sign(claims())
	require.NoError(t, err)
	newTok, err := signer(t, 2).Sign(claims())
	require.NoError(t, err)

	during := verifier(t, 1, 2)
	for _, tok := range []string{oldTok, newTok} {
		_, err := during.Verify(tok, now)
		require.NoError(t, err)
	}
	after := verifier(t, 2)
	_, err = after.Verify(oldTok, now)
	require.ErrorIs(t, err, acklink.ErrUnknownKey)
	_, err = after.Verify(newTok, now)
	require.NoError(t, err)
}

// TestRelabelledTokenIsRefused: the acknowledgement service holds public keys
// only; a token whose kid names a trusted key but whose signature another
// key made (an attacker relabelling their own token) is refused.
func TestRelabelledTokenIsRefused(t *testing.T) {
	trusted, attacker := signer(t, 1), signer(t, 9)
	forged, err := attacker.Sign(claims())
	require.NoError(t, err)
	relabelled := trusted.KeyID() + forged[strings.IndexByte(forged, '.'):]
	_, err = verifier(t, 1).Verify(relabelled, now)
	require.ErrorIs(t, err, acklink.ErrBadSignature)
}

func TestVerifyRejects(t *testing.T) {
	s := signer(t, 1)
	tok, err := s.Sign(claims())
	require.NoError(t, err)
	parts := strings.Split(tok, ".")
	require.Len(t, parts, 3)
	kid, payload, sig := parts[0], parts[1], parts[2]

	raw, err := base64.RawURLEncoding.DecodeString(payload)
	require.NoError(t, err)
	tampered := base64.RawURLEncoding.EncodeToString(bytes.Replace(raw, []byte("person-1"), []byte("person-2"), 1))

	flipped := []byte(sig)
	if flipped[0] == 'A' {
		flipped[0] = 'B'
	} else {
		flipped[0] = 'A'
	}

	// The signature's last character carries unused bits: flipping one of
	// them spells the same bytes another way.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, sig[len(sig)-1])
	respelled := sig[:len(sig)-1] + string(alphabet[last^1])

	v := verifier(t, 1)
	tests := []struct {
		name  string
		v     *acklink.Verifier
		token string
		now   time.Time
		want  error
	}{
		{"line break in the signature", v, kid + "." + payload + "." + sig[:10] + "\n" + sig[10:], now, acklink.ErrMalformed},
		{"line break in the payload", v, kid + "." + payload[:10] + "\r\n" + payload[10:] + "." + sig, now, acklink.ErrMalformed},
		{"signature's unused bits set", v, kid + "." + payload + "." + respelled, now, acklink.ErrMalformed},
		{"tampered payload", v, kid + "." + tampered + "." + sig, now, acklink.ErrBadSignature},
		{"tampered signature", v, kid + "." + payload + "." + string(flipped), now, acklink.ErrBadSignature},
		{"another key's verifier", verifier(t, 3), tok, now, acklink.ErrUnknownKey},
		{"expired exactly", v, tok, now.Add(time.Hour), acklink.ErrExpired},
		{"expired later", v, tok, now.Add(48 * time.Hour), acklink.ErrExpired},
		{"empty", v, "", now, acklink.ErrMalformed},
		{"no key id", v, payload + "." + sig, now, acklink.ErrMalformed},
		{"short key id", v, kid[:10] + "." + payload + "." + sig, now, acklink.ErrMalformed},
		{"four parts", v, tok + ".x", now, acklink.ErrMalformed},
		{"bad base64", v, kid + ".!!!." + sig, now, acklink.ErrMalformed},
		{"short signature", v, kid + "." + payload + ".AAAA", now, acklink.ErrMalformed},
		{"huge", v, strings.Repeat("a", 5000), now, acklink.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.v.Verify(tt.token, tt.now)
			require.ErrorIs(t, err, tt.want)
			require.Equal(t, acklink.Claims{}, got)
		})
	}
}

func TestSignRejects(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*acklink.Claims)
		want   string
	}{
		{"no token id", func(c *acklink.Claims) { c.TokenID = "" }, "TokenID"},
		{"no alert id", func(c *acklink.Claims) { c.AlertID = "" }, "AlertID"},
		{"no person id", func(c *acklink.Claims) { c.PersonID = "" }, "PersonID"},
		{"no expiry", func(c *acklink.Claims) { c.ExpiresAt = time.Time{} }, "ExpiresAt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := claims()
			tt.mutate(&c)
			_, err := signer(t, 1).Sign(c)
			require.ErrorContains(t, err, tt.want)
		})
	}
	_, err := acklink.NewSigner(ed25519.PrivateKey("short"))
	require.ErrorContains(t, err, "Ed25519")
	_, err = acklink.NewVerifier()
	require.ErrorContains(t, err, "no public keys")
}

// TestKeyFiles: generated files load back as a signer and a verifier that
// agree; a directory of public keys (a rotation's old and new key) loads
// both; a private key offered as a public key is refused.
func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	g, err := acklink.GenerateFiles(dir)
	require.NoError(t, err)
	st, err := os.Stat(g.PrivateKeyFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	s, err := acklink.LoadSigner(g.PrivateKeyFile)
	require.NoError(t, err)
	require.Equal(t, g.KeyID, s.KeyID())
	v, err := acklink.LoadVerifier(g.PublicKeyFile)
	require.NoError(t, err)
	tok, err := s.Sign(claims())
	require.NoError(t, err)
	_, err = v.Verify(tok, now)
	require.NoError(t, err)

	keys := filepath.Join(t.TempDir(), "keys")
	require.NoError(t, os.Mkdir(keys, 0o755))
	g2, err := acklink.GenerateFiles(t.TempDir())
	require.NoError(t, err)
	for name, from := range map[string]string{"old.pem": g.PublicKeyFile, "new.pem": g2.PublicKeyFile} {
		b, err := os.ReadFile(from)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(keys, name), b, 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(keys, "README"), []byte("not a key"), 0o644))
	both, err := acklink.LoadVerifier(keys)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{g.KeyID, g2.KeyID}, both.KeyIDs())

	_, err = acklink.LoadVerifier(g.PrivateKeyFile)
	require.ErrorContains(t, err, "want PUBLIC KEY only")
	_, err = acklink.LoadSigner(g.PublicKeyFile)
	require.ErrorContains(t, err, "no PEM PRIVATE KEY")
	_, err = acklink.LoadVerifier(t.TempDir())
	require.ErrorContains(t, err, "no PEM PUBLIC KEY")
}

// FuzzVerify: a token verifies only if it is, byte for byte, the signing
// of the claims it yields under a trusted key, and those claims are ones
// the fuzz signed with that key. A forgery (a payload, key id or signature
// the trusted keys did not make: the untrusted key's tokens are seeds too)
// or another spelling of a signed token (base64 written another way) fails
// it.
func FuzzVerify(f *testing.F) {
	signers := []*acklink.Signer{signer(f, 1), signer(f, 2)} // both trusted: a rotation
	untrusted := signer(f, 7)
	v := verifier(f, 1, 2)
	type signedBy struct {
		kid string
		c   acklink.Claims
	}
	signed := map[signedBy]bool{}
	seed := func(s *acklink.Signer, c acklink.Claims) {
		tok, err := s.Sign(c)
		require.NoError(f, err)
		signed[signedBy{s.KeyID(), c}] = true
		f.Add(tok)
	}
	other := claims()
	other.TokenID, other.NotificationID, other.Step = "tok-2", "", 0
	for _, s := range signers {
		seed(s, claims())
		seed(s, other)
	}
	bad, _ := untrusted.Sign(claims())
	f.Add(bad)
	f.Add(signers[0].KeyID() + bad[strings.IndexByte(bad, '.'):]) // relabelled
	tok, _ := signers[0].Sign(claims())
	f.Add(strings.Replace(tok, ".", ".\n", 1)) // another spelling: must not verify
	f.Add("")
	f.Add("..")
	f.Add("AAAAAAAAAAAAAAAA.eyJ9.AAAA")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(token, now)
		if err != nil {
			require.Equal(t, acklink.Claims{}, c, "claims returned with error %v", err)
			for _, known := range []error{acklink.ErrMalformed, acklink.ErrUnknownKey, acklink.ErrBadSignature, acklink.ErrExpired} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("Verify(%q): got error %v, want one of the package's errors", token, err)
		}
		kid, _, _ := strings.Cut(token, ".")
		if !signed[signedBy{kid, c}] {
			t.Fatalf("Verify(%q) accepted claims that key %s never signed: %+v", token, kid, c)
		}
		for _, s := range signers {
			if s.KeyID() != kid {
				continue
			}
			canonical, serr := s.Sign(c)
			require.NoError(t, serr)
			if token != canonical {
				t.Fatalf("Verify accepted %q, another spelling of the token %q", token, canonical)
			}
		}
	})
}
