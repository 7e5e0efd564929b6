// Package oidcauth signs people in to the console with OpenID Connect
// (authorization code flow with PKCE, S256, a state and a nonce), as NHS
// CIS2 and any certified provider expect, and keeps a short session in a
// sealed cookie (AES-256-GCM under the console's own session key, never a
// secret another service holds).
//
// A session holds the person (subject, Herald person id, name, roles per
// trust from the ID token) and the access token the console forwards as a
// bearer on every gRPC call it makes for the person. It ends at the first
// of: its idle timeout (renewed by each request), its absolute lifetime,
// or the access token's expiry when no refresh token can renew it; then
// the person signs in again. No patient data is ever put in a cookie.
package oidcauth

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/identity"
)

// MinSessionKeyLen is the shortest accepted session key, in bytes.
const MinSessionKeyLen = 32

// Cookie names. The __Host- prefix (secure, path /, no domain) is used when
// the console is served over HTTPS.
const (
	sessionCookie = "herald_session"
	loginCookie   = "herald_login"
)

// Config is how the console signs people in.
type Config struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	// PublicURL is the console's external base URL; the redirect URI is
	// PublicURL + "/auth/callback".
	PublicURL string
	// SessionKey seals the cookies (>= 32 bytes).
	SessionKey []byte
	// PersonClaim holds Herald's person id (default "sub").
	PersonClaim string
	// RolesClaim holds the roles, each "TRUST:role" ("*:role"
	// network-wide): the format of Herald's services (platform/authn).
	RolesClaim string
	// Audience, when set, is asked for as the access token's audience
	// (the audience the services verify).
	Audience string
	// IdleTimeout ends a session not used for this long (default 15 min);
	// MaxAge ends any session (default 8 h).
	IdleTimeout time.Duration
	MaxAge      time.Duration
	// Scopes beyond "openid" (default profile).
	Scopes []string
	// HTTPClient talks to the provider (its CA when not public); nil:
	// http.DefaultClient.
	HTTPClient *http.Client
	// AllowLoginHint (development only) lets the sign-in page offer
	// demo identities: the hint is passed to the provider as login_hint.
	AllowLoginHint bool
}

// Session is a signed-in person.
type Session struct {
	Subject      string              `json:"sub"`
	PersonID     string              `json:"pid"`
	Name         string              `json:"name"`
	ACR          string              `json:"acr,omitempty"`
	Roles        map[string][]string `json:"roles"`
	AccessToken  string              `json:"at"`
	RefreshToken string              `json:"rt,omitempty"`
	TokenExpiry  time.Time           `json:"exp"`
	IdleUntil    time.Time           `json:"idle"`
	Until        time.Time           `json:"until"`
	// CSRF is the token every form of this session carries.
	CSRF string `json:"csrf"`
}

// Person returns the session's person in the vocabulary of
// platform/identity.
func (s *Session) Person() *identity.Person {
	p := &identity.Person{Subject: s.Subject, PersonID: s.PersonID, DisplayName: s.Name, ACR: s.ACR,
		Roles: map[string][]identity.Role{}}
	for trust, roles := range s.Roles {
		for _, r := range roles {
			p.Roles[trust] = append(p.Roles[trust], identity.Role(r))
		}
	}
	return p
}

type login struct {
	State    string    `json:"state"`
	Nonce    string    `json:"nonce"`
	Verifier string    `json:"verifier"`
	Return   string    `json:"return"`
	Until    time.Time `json:"until"`
}

// Auth is the sign-in machinery. It is safe for concurrent use.
type Auth struct {
	cfg      Config
	clk      clock.Clock
	log      *slog.Logger
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	oauth    oauth2.Config
	aead     cipher.AEAD
	secure   bool
	endURL   string
}

// New discovers the provider and returns an Auth.
func New(ctx context.Context, cfg Config, clk clock.Clock, log *slog.Logger) (*Auth, error) {
	if len(cfg.SessionKey) < MinSessionKeyLen {
		return nil, fmt.Errorf("setting session-key must be at least %d bytes", MinSessionKeyLen)
	}
	if cfg.PersonClaim == "" {
		cfg.PersonClaim = "sub"
	}
	if cfg.RolesClaim == "" {
		cfg.RolesClaim = "herald_roles"
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 15 * time.Minute
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 8 * time.Hour
	}
	if cfg.Scopes == nil {
		cfg.Scopes = []string{"profile"}
	}
	if cfg.HTTPClient != nil {
		ctx = oidc.ClientContext(ctx, cfg.HTTPClient)
	}
	provider, err := oidc.NewProvider(ctx, cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discover OpenID provider (setting oidc-issuer): %w", err)
	}
	key := sha256.Sum256(append([]byte("herald console session v1\x00"), cfg.SessionKey...))
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, fmt.Errorf("session key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("session key: %w", err)
	}
	var meta struct {
		EndSession string `json:"end_session_endpoint"`
	}
	_ = provider.Claims(&meta)
	a := &Auth{
		cfg: cfg, clk: clk, log: log, provider: provider, aead: aead,
		verifier: provider.Verifier(&oidc.Config{ClientID: cfg.ClientID, Now: clk.Now}),
		oauth: oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Endpoint: provider.Endpoint(),
			RedirectURL: strings.TrimRight(cfg.PublicURL, "/") + "/auth/callback",
			Scopes:      append([]string{oidc.ScopeOpenID}, cfg.Scopes...)},
		secure: strings.HasPrefix(cfg.PublicURL, "https://"),
		endURL: meta.EndSession,
	}
	return a, nil
}

func (a *Auth) ctx(ctx context.Context) context.Context {
	if a.cfg.HTTPClient != nil {
		return oidc.ClientContext(ctx, a.cfg.HTTPClient)
	}
	return ctx
}

func (a *Auth) cookieName(base string) string {
	if a.secure {
		return "__Host-" + base
	}
	return base
}

// Routes registers /auth/login, /auth/callback and /auth/logout on mux.
func (a *Auth) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /auth/login", a.login)
	mux.HandleFunc("GET /auth/callback", a.callback)
	mux.HandleFunc("POST /auth/logout", a.logout)
}

// LoginURL is where to send a person who must sign in to see ret (a local
// path).
func LoginURL(ret string) string {
	return "/auth/login?return=" + url.QueryEscape(ret)
}

// SafeReturn keeps only a local path (no scheme, host or "//"), else "/".
func SafeReturn(ret string) string {
	if ret == "" || !strings.HasPrefix(ret, "/") || strings.HasPrefix(ret, "//") || strings.HasPrefix(ret, "/\\") {
		return "/"
	}
	u, err := url.Parse(ret)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return ret
}

func (a *Auth) login(w http.ResponseWriter, r *http.Request) {
	l := login{State: randomString(), Nonce: randomString(), Verifier: oauth2.GenerateVerifier(),
		Return: SafeReturn(r.URL.Query().Get("return")), Until: a.clk.Now().Add(10 * time.Minute)}
	if err := a.setCookie(w, loginCookie, l, l.Until); err != nil {
		http.Error(w, "could not start sign-in", http.StatusInternalServerError)
		return
	}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(l.Verifier), oidc.Nonce(l.Nonce)}
	if a.cfg.Audience != "" {
		opts = append(opts, oauth2.SetAuthURLParam("audience", a.cfg.Audience))
	}
	if hint := r.URL.Query().Get("login_hint"); hint != "" && a.cfg.AllowLoginHint {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", hint))
	}
	http.Redirect(w, r, a.oauth.AuthCodeURL(l.State, opts...), http.StatusFound)
}

func (a *Auth) callback(w http.ResponseWriter, r *http.Request) {
	var l login
	if err := a.readCookie(r, loginCookie, &l); err != nil || a.clk.Now().After(l.Until) {
		a.fail(w, r, "the sign-in took too long or was started elsewhere", err)
		return
	}
	a.clearCookie(w, loginCookie)
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		a.fail(w, r, "the identity provider refused the sign-in", errors.New(e))
		return
	}
	if q.Get("state") == "" || q.Get("state") != l.State {
		a.fail(w, r, "the sign-in response does not match this browser's request", errors.New("state mismatch"))
		return
	}
	ctx := a.ctx(r.Context())
	tok, err := a.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(l.Verifier))
	if err != nil {
		a.fail(w, r, "the identity provider did not accept the sign-in code", err)
		return
	}
	s, err := a.sessionFrom(ctx, tok, l.Nonce)
	if err != nil {
		a.fail(w, r, "the identity token could not be verified", err)
		return
	}
	if err := a.save(w, s); err != nil {
		a.fail(w, r, "the session could not be kept", err)
		return
	}
	a.log.InfoContext(r.Context(), "person signed in to the console", slog.String("person", s.PersonID))
	http.Redirect(w, r, l.Return, http.StatusSeeOther)
}

func (a *Auth) sessionFrom(ctx context.Context, tok *oauth2.Token, nonce string) (*Session, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, errors.New("no id_token in the token response")
	}
	idt, err := a.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	if nonce != "" && idt.Nonce != nonce {
		return nil, errors.New("nonce mismatch")
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return nil, err
	}
	now := a.clk.Now()
	s := &Session{Subject: idt.Subject, Roles: map[string][]string{}, AccessToken: tok.AccessToken,
		RefreshToken: tok.RefreshToken, TokenExpiry: tok.Expiry, IdleUntil: now.Add(a.cfg.IdleTimeout),
		Until: now.Add(a.cfg.MaxAge), CSRF: randomString()}
	s.PersonID, _ = claims[a.cfg.PersonClaim].(string)
	if s.PersonID == "" {
		return nil, fmt.Errorf("claim %s (setting oidc-person-claim) is missing", a.cfg.PersonClaim)
	}
	s.ACR, _ = claims["acr"].(string)
	for _, k := range []string{"name", "preferred_username", "email"} {
		if v, _ := claims[k].(string); v != "" {
			s.Name = v
			break
		}
	}
	if s.Name == "" {
		s.Name = s.PersonID
	}
	roles, _ := claims[a.cfg.RolesClaim].([]any)
	for _, v := range roles {
		str, _ := v.(string)
		trust, role, ok := strings.Cut(str, ":")
		if !ok || role == "" || trust == "" {
			continue
		}
		s.Roles[trust] = append(s.Roles[trust], role)
	}
	if s.TokenExpiry.IsZero() {
		s.TokenExpiry = s.Until
	}
	return s, nil
}

func (a *Auth) logout(w http.ResponseWriter, r *http.Request) {
	s, _ := a.Session(w, r)
	if s != nil && r.PostFormValue("csrf") != s.CSRF {
		http.Error(w, "this form has expired: go back and try again", http.StatusForbidden)
		return
	}
	a.clearCookie(w, sessionCookie)
	if s != nil {
		a.log.InfoContext(r.Context(), "person signed out of the console", slog.String("person", s.PersonID))
	}
	http.Redirect(w, r, "/signed-out", http.StatusSeeOther)
}

func (a *Auth) fail(w http.ResponseWriter, r *http.Request, why string, err error) {
	a.log.WarnContext(r.Context(), "console sign-in failed", slog.String("why", why), slog.Any("error", err))
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprintf(w, "Sign-in failed: %s. Go back to the console and sign in again.\n", why)
}

// Session returns the signed-in person's session, renewing its idle
// timeout (and its access token, with a refresh token, when it expired),
// or nil when nobody is signed in or the session ended.
func (a *Auth) Session(w http.ResponseWriter, r *http.Request) (*Session, error) {
	var s Session
	if err := a.readCookie(r, sessionCookie, &s); err != nil {
		return nil, nil
	}
	now := a.clk.Now()
	if !now.Before(s.IdleUntil) || !now.Before(s.Until) {
		a.clearCookie(w, sessionCookie)
		return nil, nil
	}
	if !now.Before(s.TokenExpiry) {
		if s.RefreshToken == "" {
			a.clearCookie(w, sessionCookie)
			return nil, nil
		}
		tok, err := a.oauth.TokenSource(a.ctx(r.Context()), &oauth2.Token{RefreshToken: s.RefreshToken}).Token()
		if err != nil {
			a.clearCookie(w, sessionCookie)
			return nil, nil
		}
		s.AccessToken, s.TokenExpiry = tok.AccessToken, tok.Expiry
		if tok.RefreshToken != "" {
			s.RefreshToken = tok.RefreshToken
		}
	}
	s.IdleUntil = now.Add(a.cfg.IdleTimeout)
	if err := a.save(w, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func (a *Auth) save(w http.ResponseWriter, s *Session) error {
	return a.setCookie(w, sessionCookie, s, time.Time{})
}

func (a *Auth) setCookie(w http.ResponseWriter, name string, v any, expires time.Time) error {
	plain, err := json.Marshal(v)
	if err != nil {
		return err
	}
	nonce := make([]byte, a.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	sealed := a.aead.Seal(nonce, nonce, plain, []byte(name))
	c := &http.Cookie{Name: a.cookieName(name), Value: base64.RawURLEncoding.EncodeToString(sealed), Path: "/",
		HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteLaxMode}
	if !expires.IsZero() {
		c.Expires = expires
	}
	http.SetCookie(w, c)
	return nil
}

func (a *Auth) readCookie(r *http.Request, name string, v any) error {
	c, err := r.Cookie(a.cookieName(name))
	if err != nil {
		return err
	}
	raw, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(raw) < a.aead.NonceSize() {
		return errors.New("malformed cookie")
	}
	plain, err := a.aead.Open(nil, raw[:a.aead.NonceSize()], raw[a.aead.NonceSize():], []byte(name))
	if err != nil {
		return errors.New("cookie not sealed by this console")
	}
	return json.Unmarshal(plain, v)
}

func (a *Auth) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: a.cookieName(name), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteLaxMode})
}

func randomString() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
