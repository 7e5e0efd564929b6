// Package authntest is an OpenID issuer for unit and component tests: its
// discovery document and JWKS over HTTP (httptest), and access tokens
// signed with its RSA key, with Herald's claims. Suites that need a real
// provider process use platform/devidp.
package authntest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Issuer is a test OpenID issuer.
type Issuer struct {
	URL  string
	Key  *rsa.PrivateKey
	KID  string
	hits atomic.Int64
}

// NewIssuer starts an issuer, stopped when t ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is := &Issuer{Key: key, KID: "k1"}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	is.URL = srv.URL
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": is.URL, "jwks_uri": is.URL + "/jwks",
			"authorization_endpoint": is.URL + "/auth", "token_endpoint": is.URL + "/token"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		is.hits.Add(1)
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &is.Key.PublicKey, KeyID: is.KID, Algorithm: "RS256", Use: "sig"}}})
	})
	return is
}

// KeyFetches is how many times the JWKS was fetched.
func (is *Issuer) KeyFetches() int64 { return is.hits.Load() }

// Claims are an access token's claims.
type Claims struct {
	jwt.Claims
	ACR   string   `json:"acr,omitempty"`
	Name  string   `json:"name,omitempty"`
	Pers  string   `json:"herald_person,omitempty"`
	Roles []string `json:"herald_roles,omitempty"`
}

// Token signs an access token for subject (also its Herald person id) with
// roles ("TRUST:role"), audience "herald", acr AAL3_ANY, valid 15 minutes;
// change edits the claims before signing.
func (is *Issuer) Token(t testing.TB, subject string, roles []string, change func(*Claims)) string {
	t.Helper()
	now := time.Now()
	c := Claims{Claims: jwt.Claims{Issuer: is.URL, Subject: subject, Audience: jwt.Audience{"herald"},
		Expiry: jwt.NewNumericDate(now.Add(15 * time.Minute)), IssuedAt: jwt.NewNumericDate(now), ID: "jti-" + subject},
		ACR: "AAL3_ANY", Name: subject, Pers: subject, Roles: roles}
	if change != nil {
		change(&c)
	}
	return Sign(t, is.Key, is.KID, c)
}

// Sign signs any claims with key as kid.
func Sign(t testing.TB, key *rsa.PrivateKey, kid string, c any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
