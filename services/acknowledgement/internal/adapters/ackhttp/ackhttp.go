// Package ackhttp serves acknowledge links: GET /ack/<token> shows a
// minimal page (alert reference, category, deadline, what is asked: never
// patient data), and POST /ack/<token> records the acknowledgement once the
// person is identified: by OpenID Connect (authorization-code flow with
// PKCE-less state and nonce, session in a signed cookie) in production, or
// by a fixed development identity.
//
// A token is verified (signature, expiry: platform/acklink), must have been
// sent to the identified person, and is single use (its id is recorded in
// Redis with SETNX; the acknowledgement's request id is derived from it, so
// even a lost record cannot acknowledge twice). Tokens are never logged.
package ackhttp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/herald-health/herald/platform/acklink"
	"github.com/herald-health/herald/platform/alertref"
	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/fault"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"golang.org/x/oauth2"
)

// LinkRecipient as DevIdentity identifies the user as the person the link
// was sent to (development only).
const LinkRecipient = "link-recipient"

// Config configures the handler.
type Config struct {
	// Links verifies link tokens (public keys only: platform/acklink).
	Links *acklink.Verifier
	// References makes the alert reference the page shows (the one in
	// the messages).
	References alertref.Key
	PublicURL  string
	// DevIdentity: see acknowledgement.Config.DevIdentity. When set, OIDC
	// is not used.
	DevIdentity      string
	OIDCIssuer       string
	OIDCClientID     string
	OIDCClientSecret string
	OIDCPersonClaim  string
	// SessionKey seals the session and login-state cookies (>= 32 bytes;
	// its own secret, not derived from the link secret).
	SessionKey []byte
	// SessionIdle ends a session not used for this long; SessionMax ends
	// any session this long after sign-in (defaults 15 min and 8 h).
	SessionIdle time.Duration
	SessionMax  time.Duration
	// MinACR is the assurance level a sign-in must reach to acknowledge;
	// ACRLevels rank the levels, lowest first ("" MinACR: any).
	MinACR    string
	ACRLevels []string
}

// Session defaults.
const (
	DefaultSessionIdle = 15 * time.Minute
	DefaultSessionMax  = 8 * time.Hour
	// MinSessionKeyLen is the shortest session key taken.
	MinSessionKeyLen = 32
)

// Tokens makes link tokens single use. ClaimToken reports false when the
// token id was used before; ReleaseToken forgets a use that did not lead to
// a recorded acknowledgement.
type Tokens interface {
	ClaimToken(ctx context.Context, tokenID string, until time.Time) (bool, error)
	ReleaseToken(ctx context.Context, tokenID string) error
}

// Commands is what the pages need from the application.
type Commands interface {
	Get(ctx context.Context, alertID string) (*lifecycle.State, error)
	Acknowledge(ctx context.Context, alertID string, c lifecycle.Acknowledge) (app.Outcome, error)
}

// Handler serves the link pages.
type Handler struct {
	cfg    Config
	app    Commands
	tokens Tokens
	clk    clock.Clock
	log    *slog.Logger
	mux    *http.ServeMux
	oauth  *oauth2.Config
	verify *oidc.IDTokenVerifier
	issuer string
	cookie []byte // key of the session and login-state cookies
	endURL string // the issuer's end_session_endpoint, if any
}

const (
	sessionCookie = "herald_ack_session"
	stateCookie   = "herald_ack_login"
	// renewAfter is how stale a session's last use may get before a
	// request re-issues its cookie (sliding idle expiry).
	renewAfter = time.Minute
)

// New returns the handler. With OIDC configured it discovers the issuer
// (an unreachable issuer is an error naming it).
func New(ctx context.Context, cfg Config, a Commands, tokens Tokens, clk clock.Clock, log *slog.Logger) (*Handler, error) {
	h := &Handler{cfg: cfg, app: a, tokens: tokens, clk: clk, log: log, mux: http.NewServeMux(), cookie: cfg.SessionKey}
	if h.cfg.SessionIdle <= 0 {
		h.cfg.SessionIdle = DefaultSessionIdle
	}
	if h.cfg.SessionMax <= 0 {
		h.cfg.SessionMax = DefaultSessionMax
	}
	if cfg.DevIdentity == "" {
		if len(cfg.SessionKey) < MinSessionKeyLen {
			return nil, fmt.Errorf("the acknowledge page's session key must be at least %d bytes (setting session-key-file)", MinSessionKeyLen)
		}
		provider, err := oidc.NewProvider(oidc.ClientContext(ctx, http.DefaultClient), cfg.OIDCIssuer)
		if err != nil {
			return nil, fmt.Errorf("discover OIDC issuer %s (setting oidc-issuer): %w", cfg.OIDCIssuer, err)
		}
		h.issuer = cfg.OIDCIssuer
		var meta struct {
			End string `json:"end_session_endpoint"`
		}
		if provider.Claims(&meta) == nil {
			h.endURL = meta.End
		}
		h.verify = provider.Verifier(&oidc.Config{ClientID: cfg.OIDCClientID, Now: clk.Now})
		h.oauth = &oauth2.Config{
			ClientID: cfg.OIDCClientID, ClientSecret: cfg.OIDCClientSecret, Endpoint: provider.Endpoint(),
			RedirectURL: strings.TrimRight(cfg.PublicURL, "/") + "/auth/callback",
			Scopes:      []string{oidc.ScopeOpenID, "profile"},
		}
		h.mux.HandleFunc("GET /auth/login", h.login)
		h.mux.HandleFunc("GET /auth/callback", h.callback)
		h.mux.HandleFunc("POST /auth/logout", h.logout)
		h.mux.HandleFunc("GET /auth/logout", h.logout)
	}
	h.mux.HandleFunc("GET /ack/{token}", h.page)
	h.mux.HandleFunc("POST /ack/{token}", h.acknowledge)
	return h, nil
}

// ServeHTTP sets protective headers (the token is in the URL: no referrer,
// no caching, no framing) and routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	h.mux.ServeHTTP(w, r)
}

type view struct {
	Title    string
	Message  string
	Ref      string
	Category string
	Deadline string
	Asked    string
	Action   string
	Person   string
	// Logout offers signing out (a page session).
	Logout bool
	Status int
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Herald: {{.Title}}</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto">
<h1>{{.Title}}</h1>
{{if .Ref}}<dl>
<dt>Alert reference</dt><dd>{{.Ref}}</dd>
<dt>Category</dt><dd>{{.Category}}</dd>
{{if .Deadline}}<dt>Respond by</dt><dd>{{.Deadline}}</dd>{{end}}
</dl>{{end}}
{{if .Asked}}<p>{{.Asked}}</p>{{end}}
{{if .Message}}<p>{{.Message}}</p>{{end}}
{{if .Action}}<form method="post" action="{{.Action}}">
<button type="submit">{{if .Person}}Acknowledge as {{.Person}}{{else}}Sign in and acknowledge{{end}}</button>
</form>{{end}}
{{if .Logout}}<form method="post" action="/auth/logout"><button type="submit">Sign out</button></form>{{end}}
</body></html>
`))

func (h *Handler) render(w http.ResponseWriter, v view) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if v.Status == 0 {
		v.Status = http.StatusOK
	}
	w.WriteHeader(v.Status)
	_ = pageTmpl.Execute(w, v)
}

// claims verifies the token of the request, rendering the error page when
// it is not good.
func (h *Handler) claims(w http.ResponseWriter, r *http.Request) (acklink.Claims, bool) {
	c, err := h.cfg.Links.Verify(r.PathValue("token"), h.clk.Now())
	switch {
	case errors.Is(err, acklink.ErrExpired):
		h.render(w, view{Title: "Link expired", Message: "This acknowledge link has expired. Open the alert in Herald or contact the sender.", Status: http.StatusGone})
		return c, false
	case err != nil:
		// The reason, never the token: a key id no longer trusted after a
		// rotation shows up here (docs/deployment.md).
		h.log.InfoContext(r.Context(), "acknowledge link refused", "reason", err.Error())
		h.render(w, view{Title: "Link not valid", Message: "This acknowledge link is not valid.", Status: http.StatusNotFound})
		return c, false
	}
	return c, true
}

func (h *Handler) describe(st *lifecycle.State) view {
	v := view{Ref: h.cfg.References.Ref(st.GetAlertId()), Category: categoryName(st)}
	if d := st.GetClocks().GetAcknowledgeBy(); d != nil {
		v.Deadline = d.AsTime().UTC().Format("2006-01-02 15:04 UTC")
	} else if d := st.GetStepDueAt(); d != nil {
		v.Deadline = d.AsTime().UTC().Format("2006-01-02 15:04 UTC")
	}
	return v
}

func categoryName(st *lifecycle.State) string {
	if st.GetCategory() == eventsv1.Category_CATEGORY_LOCAL && st.GetLocalCategory() != "" {
		return st.GetLocalCategory()
	}
	name := strings.TrimPrefix(st.GetCategory().String(), "CATEGORY_")
	return strings.ReplaceAll(name, "_", " ")
}

const asked = "A result needs your attention. By acknowledging you accept responsibility for acting on it. " +
	"The details are shown in the reporting system after you sign in."

func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	c, ok := h.claims(w, r)
	if !ok {
		return
	}
	st, err := h.app.Get(r.Context(), c.AlertID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	v := h.describe(st)
	v.Title = "Acknowledge alert " + v.Ref
	if !awaiting(st) {
		v.Title = "Alert " + v.Ref
		v.Message = "This alert is " + strings.ToLower(lifecycle.StatusName(st.GetState())) + "; nothing is asked of you."
		h.render(w, v)
		return
	}
	v.Asked = asked
	v.Action = r.URL.Path
	if p, ok := h.identify(w, r, c); ok {
		v.Person = p.GetPersonId()
		v.Logout = h.oauth != nil
	}
	h.render(w, v)
}

func awaiting(st *lifecycle.State) bool {
	return !lifecycle.IsTerminal(st) && !lifecycle.IsAcknowledged(st) && st.GetState() != lifecycle.Raised && st.GetState() != lifecycle.Quarantined
}

func (h *Handler) acknowledge(w http.ResponseWriter, r *http.Request) {
	c, ok := h.claims(w, r)
	if !ok {
		return
	}
	if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, h.cfg.PublicURL, r) {
		h.render(w, view{Title: "Not allowed", Message: "This request did not come from the acknowledge page.", Status: http.StatusForbidden})
		return
	}
	actor, ok := h.identify(w, r, c)
	if !ok {
		if h.oauth == nil {
			h.render(w, view{Title: "Sign-in unavailable", Message: "No identity provider is configured.", Status: http.StatusServiceUnavailable})
			return
		}
		http.Redirect(w, r, "/auth/login?return="+url.QueryEscape(r.URL.Path), http.StatusSeeOther)
		return
	}
	if actor.GetPersonId() != c.PersonID {
		h.log.WarnContext(r.Context(), "acknowledge link used by another person", "alert_id", c.AlertID)
		h.render(w, view{Title: "Not your link", Message: "This link was sent to another person. Ask for the alert to be sent to you.", Status: http.StatusForbidden})
		return
	}
	first, err := h.tokens.ClaimToken(r.Context(), c.TokenID, c.ExpiresAt)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if !first {
		h.render(w, view{Title: "Link already used", Message: "This acknowledge link has already been used.", Status: http.StatusConflict})
		return
	}
	o, err := h.app.Acknowledge(r.Context(), c.AlertID, lifecycle.Acknowledge{Actor: actor, RequestID: "link:" + c.TokenID, Via: "link"})
	if err != nil {
		if !errors.Is(err, fault.ErrFailedPrecondition) {
			_ = h.tokens.ReleaseToken(context.WithoutCancel(r.Context()), c.TokenID)
		}
		h.fail(w, r, err)
		return
	}
	h.log.InfoContext(r.Context(), "alert acknowledged by link", "alert_id", c.AlertID, "tenant", o.State.GetTenant(), "step", c.Step)
	v := h.describe(o.State)
	v.Title = "Acknowledged"
	v.Message = "Thank you. You have accepted responsibility for alert " + v.Ref + "."
	h.render(w, v)
}

func sameOrigin(origin, public string, r *http.Request) bool {
	if u, err := url.Parse(public); err == nil && origin == u.Scheme+"://"+u.Host {
		return true
	}
	return origin == "http://"+r.Host || origin == "https://"+r.Host
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, fault.ErrNotFound):
		h.render(w, view{Title: "Alert not found", Message: "This alert is not known (yet). Try again in a minute.", Status: http.StatusNotFound})
	case errors.Is(err, fault.ErrFailedPrecondition):
		h.render(w, view{Title: "Nothing to acknowledge", Message: err.Error(), Status: http.StatusConflict})
	case errors.Is(err, fault.ErrUnavailable):
		h.render(w, view{Title: "Try again", Message: "Herald is busy; please try again in a moment.", Status: http.StatusServiceUnavailable})
	default:
		h.log.ErrorContext(r.Context(), "acknowledge page", "error", err.Error())
		h.render(w, view{Title: "Something went wrong", Message: "Please try again.", Status: http.StatusInternalServerError})
	}
}

// identify returns the person acting: the development identity, or the
// person of a valid session cookie (renewed when w is given and the
// session was last renewed more than renewAfter ago).
func (h *Handler) identify(w http.ResponseWriter, r *http.Request, c acklink.Claims) (*eventsv1.Actor, bool) {
	if h.cfg.DevIdentity != "" {
		p := h.cfg.DevIdentity
		if p == LinkRecipient {
			p = c.PersonID
		}
		return &eventsv1.Actor{PersonId: p, IdentityProvider: "dev"}, true
	}
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, false
	}
	v, ok := h.open(ck.Value)
	if !ok {
		return nil, false
	}
	s, ok := parseSession(v)
	now := h.clk.Now()
	if !ok || now.Sub(s.last) >= h.cfg.SessionIdle || now.Sub(s.created) >= h.cfg.SessionMax || now.Before(s.created) {
		return nil, false
	}
	if w != nil && now.Sub(s.last) >= renewAfter {
		s.last = now
		h.setSession(w, s)
	}
	return &eventsv1.Actor{PersonId: s.person, DisplayName: s.name, IdentityProvider: "oidc", Issuer: h.issuer, Subject: s.subject, Acr: s.acr}, true
}

// session is what the session cookie holds (sealed): who signed in, at
// which level, when, and when the session was last renewed.
type session struct {
	person, subject, name, acr string
	created, last              time.Time
}

func (s session) String() string {
	return strings.Join([]string{url.QueryEscape(s.person), url.QueryEscape(s.subject), url.QueryEscape(s.name), url.QueryEscape(s.acr),
		strconv.FormatInt(s.created.Unix(), 10), strconv.FormatInt(s.last.Unix(), 10)}, "|")
}

func parseSession(v string) (session, bool) {
	f := strings.Split(v, "|")
	if len(f) != 6 {
		return session{}, false
	}
	var s session
	var errs [6]error
	s.person, errs[0] = url.QueryUnescape(f[0])
	s.subject, errs[1] = url.QueryUnescape(f[1])
	s.name, errs[2] = url.QueryUnescape(f[2])
	s.acr, errs[3] = url.QueryUnescape(f[3])
	created, err4 := strconv.ParseInt(f[4], 10, 64)
	last, err5 := strconv.ParseInt(f[5], 10, 64)
	if errors.Join(append(errs[:4], err4, err5)...) != nil || s.person == "" {
		return session{}, false
	}
	s.created, s.last = time.Unix(created, 0), time.Unix(last, 0)
	return s, true
}

// setSession writes the session cookie; the browser keeps it no longer
// than the session's maximum.
func (h *Handler) setSession(w http.ResponseWriter, s session) {
	maxAge := int(h.cfg.SessionMax.Seconds()) - int(h.clk.Now().Sub(s.created).Seconds())
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: h.seal(s.String()), Path: "/",
		HttpOnly: true, Secure: h.secure(), SameSite: http.SameSiteLaxMode, MaxAge: max(maxAge, 1)})
}

// logout ends the session at once (and at the provider, when it has an
// end-session endpoint).
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: h.secure(), SameSite: http.SameSiteLaxMode})
	v := view{Title: "Signed out", Message: "You are signed out of Herald's acknowledge page."}
	if h.endURL != "" {
		v.Message += " To sign out of your identity provider as well, close the browser or sign out there."
	}
	h.render(w, v)
}

// acrEnough reports whether acr reaches the page's minimum level.
func (h *Handler) acrEnough(acr string) bool {
	if h.cfg.MinACR == "" {
		return true
	}
	rank := func(l string) int { return slices.Index(h.cfg.ACRLevels, l) }
	return rank(acr) >= 0 && rank(acr) >= rank(h.cfg.MinACR)
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	ret := r.URL.Query().Get("return")
	if !strings.HasPrefix(ret, "/ack/") {
		ret = "/"
	}
	state, nonce, verifier := random(), random(), oauth2.GenerateVerifier()
	http.SetCookie(w, &http.Cookie{Name: stateCookie, Value: h.seal(state + "|" + nonce + "|" + verifier + "|" + ret), Path: "/auth/",
		HttpOnly: true, Secure: h.secure(), SameSite: http.SameSiteLaxMode, MaxAge: 600})
	opts := []oauth2.AuthCodeOption{oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)}
	if h.cfg.MinACR != "" {
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", h.cfg.MinACR))
	}
	http.Redirect(w, r, h.oauth.AuthCodeURL(state, opts...), http.StatusFound)
}

func (h *Handler) callback(w http.ResponseWriter, r *http.Request) {
	bad := func(msg string) {
		h.render(w, view{Title: "Sign-in failed", Message: msg, Status: http.StatusUnauthorized})
	}
	ck, err := r.Cookie(stateCookie)
	if err != nil {
		bad("The sign-in took too long or cookies are disabled. Open the link again.")
		return
	}
	v, ok := h.open(ck.Value)
	parts := strings.SplitN(v, "|", 4)
	if !ok || len(parts) != 4 || r.URL.Query().Get("state") != parts[0] {
		bad("The sign-in could not be matched to this browser. Open the link again.")
		return
	}
	tok, err := h.oauth.Exchange(r.Context(), r.URL.Query().Get("code"), oauth2.VerifierOption(parts[2]))
	if err != nil {
		h.log.WarnContext(r.Context(), "OIDC code exchange", "error", err.Error())
		bad("The identity provider did not confirm the sign-in.")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := h.verify.Verify(r.Context(), raw)
	if err != nil || idt.Nonce != parts[1] {
		bad("The identity provider's answer could not be verified.")
		return
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		bad("The identity provider's answer could not be read.")
		return
	}
	person, _ := claims[h.cfg.OIDCPersonClaim].(string)
	if person == "" {
		bad("Your account has no Herald person id.")
		return
	}
	acr, _ := claims["acr"].(string)
	if !h.acrEnough(acr) {
		h.log.WarnContext(r.Context(), "acknowledge page sign-in below the required assurance level", "acr", acr, "want", h.cfg.MinACR)
		h.render(w, view{Title: "Stronger sign-in needed", Status: http.StatusForbidden,
			Message: "Acknowledging needs sign-in at assurance level " + h.cfg.MinACR + " (for example with your smartcard). Open the link again and sign in with it."})
		return
	}
	name, _ := claims["name"].(string)
	now := h.clk.Now()
	http.SetCookie(w, &http.Cookie{Name: stateCookie, Value: "", Path: "/auth/", MaxAge: -1})
	h.setSession(w, session{person: person, subject: idt.Subject, name: name, acr: acr, created: now, last: now})
	http.Redirect(w, r, parts[3], http.StatusSeeOther)
}

func (h *Handler) secure() bool { return strings.HasPrefix(h.cfg.PublicURL, "https://") }

// seal signs v for a cookie: base64url(v) "." base64url(HMAC).
func (h *Handler) seal(v string) string {
	m := hmac.New(sha256.New, h.cookie)
	m.Write([]byte(v))
	return base64.RawURLEncoding.EncodeToString([]byte(v)) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// open returns the value of a cookie that seal made, byte for byte (the
// decoder would also take line breaks and other spellings of the same
// bytes: they do not open).
func (h *Handler) open(s string) (string, bool) {
	p, sig, ok := strings.Cut(s, ".")
	if !ok {
		return "", false
	}
	v, err1 := base64.RawURLEncoding.DecodeString(p)
	got, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil || base64.RawURLEncoding.EncodeToString(v) != p || base64.RawURLEncoding.EncodeToString(got) != sig {
		return "", false
	}
	m := hmac.New(sha256.New, h.cookie)
	m.Write(v)
	if !hmac.Equal(got, m.Sum(nil)) {
		return "", false
	}
	return string(v), true
}

func random() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
