package devidp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/authn"
	"github.com/herald-health/herald/platform/identity"
)

// The provider process issues, through the authorization-code + PKCE flow,
// a JWT access token that authn verifies: issuer, audience, expiry, acr
// and Herald's person and role claims; the login form works as a browser
// would use it.
func TestProviderIssuesVerifiableTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Hydra")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p, err := Start(ctx, Options{Log: testLog(t), Users: append(DemoUsers(), Person("e2e-dr-x", "RZZ", identity.RoleClinician))})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const redirect = "http://127.0.0.1:1/callback"
	if err := p.RegisterClient(ctx, Client{ID: "test", RedirectURIs: []string{redirect}, Audience: []string{"herald"}}); err != nil {
		t.Fatal(err)
	}
	tok, err := p.Token(ctx, "test", redirect, "rzz-fso-patel", "AAL3_ANY", "herald")
	if err != nil {
		t.Fatal(err)
	}
	cfg := authn.DefaultConfig()
	cfg.Issuer = p.Issuer
	a, err := authn.New(ctx, cfg, authn.ClaimBinder{PersonClaim: cfg.PersonClaim, RolesClaim: cfg.RolesClaim})
	if err != nil {
		t.Fatal(err)
	}
	person, err := a.Verify(ctx, "/herald.acknowledgement.v1.AcknowledgementService/Close", tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if person.Subject != "rzz-fso-patel" || person.PersonID != "rzz-fso-patel" || person.ACR != "AAL3_ANY" || person.Issuer != p.Issuer ||
		!person.Has("RZZ", identity.RoleFailsafeOfficer) || person.Has("RZY", identity.RoleFailsafeOfficer) {
		t.Fatalf("person = %+v", person)
	}
	// The ID token carries the person and their roles in Herald's format
	// (the console's sign-in reads them there).
	raw, _ := tok.Extra("id_token").(string)
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("no ID token: %q", raw)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var idClaims struct {
		Person string   `json:"herald_person"`
		Roles  []string `json:"herald_roles"`
	}
	if err := json.Unmarshal(payload, &idClaims); err != nil || idClaims.Person != "rzz-fso-patel" || !slices.Equal(idClaims.Roles, []string{"RZZ:failsafe-officer"}) {
		t.Fatalf("ID token claims = %s (%v)", payload, err)
	}

	// The login form, as a person would submit it, at a low level.
	conf := p.OAuth2("test", "", redirect)
	u := conf.AuthCodeURL("state-12345678", oauthS256("verifier-that-is-long-enough-0123456789-abcdefghij"), audienceParam("herald"))
	back, err := p.Authorize(ctx, u, redirect, url.Values{"user": {"rzy-dr-khan"}, "acr": {"AAL1_USERPASS"}})
	if err != nil {
		t.Fatal(err)
	}
	if back.Query().Get("code") == "" {
		t.Fatalf("no code in %s", back)
	}
}
