// Package devidp is Herald's development and test OpenID provider: Ory
// Hydra v2 (an OpenID-certified provider) run as a separate process with
// an in-memory store, and its login and consent app, which this package
// serves in-process: it signs in one of a fixed list of users (the demo
// people of `make run`, or a test's own) at the assurance level (acr)
// asked for, and puts Herald's claims into the JWT access token (acr, name,
// herald_person, herald_roles) and the ID token (name, herald_person,
// herald_roles: what the console's sign-in reads).
//
// Start runs both; RegisterClient adds an OAuth client (authorization code
// with PKCE); Token signs a user in headlessly through the real
// authorization-code + PKCE flow (the harness's and the demo's way to get
// a token). It is used by the e2e harness and by `make run`, where the
// console signs people in through it too. Never in production: anyone who can reach the
// login page can sign in as anyone.
package devidp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/herald-health/herald/platform/freeport"
	"golang.org/x/oauth2"
)

// DefaultACR is the assurance level of a sign-in that asks for none.
const DefaultACR = "AAL2_OR_ABOVE"

// ACRLevels are the levels the login page offers (CIS2's names).
var ACRLevels = []string{"AAL1_USERPASS", "AAL2_OR_ABOVE", "AAL3_ANY"}

// Options configure Start.
type Options struct {
	// Users may sign in (default DemoUsers).
	Users []User
	// Others, when set, signs in a subject not in Users (a demo's whole
	// directory without listing it).
	Others func(subject string) (User, bool)
	// Dir holds Hydra's configuration (default a temporary folder).
	Dir string
	// Host is the loopback address to listen on (default 127.0.0.1).
	Host string
	// PublicPort fixes Hydra's public (issuer) port; 0 picks a free one.
	PublicPort int
	// Log receives the provider's output (Hydra's lines); nil discards.
	Log io.Writer
	// Logger logs the login app's errors; nil discards.
	Logger *slog.Logger
}

// Provider is a running development provider.
type Provider struct {
	// Issuer is the issuer URL (ends in a slash, as Hydra names itself).
	Issuer string
	// AdminURL is Hydra's admin API.
	AdminURL string
	// LoginURL is the login and consent app.
	LoginURL string

	users  map[string]User
	others func(string) (User, bool)
	log    *slog.Logger
	cmd    *exec.Cmd
	app    *http.Server
	done   chan struct{}
	dir    string
	tmp    bool

	closeOnce sync.Once
}

// Start builds (or finds) Hydra, starts it and the login app, and waits
// until Hydra is ready.
func Start(ctx context.Context, opts Options) (*Provider, error) {
	bin, err := Binary(ctx)
	if err != nil {
		return nil, err
	}
	if len(opts.Users) == 0 {
		opts.Users = DemoUsers()
	}
	host := opts.Host
	if host == "" {
		host = "127.0.0.1"
	}
	p := &Provider{users: map[string]User{}, others: opts.Others, log: opts.Logger, done: make(chan struct{}), dir: opts.Dir}
	if p.log == nil {
		p.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	for _, u := range opts.Users {
		p.users[u.Subject] = u
	}
	if p.dir == "" {
		if p.dir, err = os.MkdirTemp("", "herald-devidp-"); err != nil {
			return nil, err
		}
		p.tmp = true
	}
	appLis, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("dev identity provider: listen for the login app: %w", err)
	}
	p.LoginURL = "http://" + appLis.Addr().String()
	public := opts.PublicPort
	if public == 0 {
		if public, err = freeport.Port(host); err != nil {
			_ = appLis.Close()
			return nil, err
		}
	}
	admin, err := freeport.Port(host)
	if err != nil {
		_ = appLis.Close()
		return nil, err
	}
	p.Issuer = fmt.Sprintf("http://%s/", net.JoinHostPort(host, fmt.Sprint(public)))
	p.AdminURL = "http://" + net.JoinHostPort(host, fmt.Sprint(admin))
	cfgFile := filepath.Join(p.dir, "hydra.yaml")
	if err := os.WriteFile(cfgFile, []byte(hydraConfig(host, public, admin, p.Issuer, p.LoginURL)), 0o600); err != nil {
		_ = appLis.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", p.loginPage)
	mux.HandleFunc("POST /login", p.loginSubmit)
	mux.HandleFunc("GET /consent", p.consent)
	mux.HandleFunc("GET /logout", p.logout)
	p.app = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.app.Serve(appLis) }()

	out := opts.Log
	if out == nil {
		out = io.Discard
	}
	// The provider outlives ctx (it is stopped by Close).
	p.cmd = exec.Command(bin, "serve", "all", "--dev", "--sqa-opt-out", "--config", cfgFile)
	p.cmd.Env = append(os.Environ(), "DSN=memory")
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		_ = p.app.Close()
		return nil, fmt.Errorf("start Hydra %s: %w", bin, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	if err := p.waitReady(ctx); err != nil {
		_ = p.Close()
		return nil, err
	}
	return p, nil
}

func hydraConfig(host string, public, admin int, issuer, login string) string {
	return fmt.Sprintf(`serve:
  public: {host: %[1]s, port: %[2]d}
  admin: {host: %[1]s, port: %[3]d}
  cookies: {same_site_mode: Lax}
urls:
  self: {issuer: %[4]s}
  login: %[5]s/login
  consent: %[5]s/consent
  logout: %[5]s/logout
secrets:
  system: [herald-development-only-system-secret]
strategies:
  access_token: jwt
ttl:
  access_token: 15m
  refresh_token: 8h
  id_token: 15m
oauth2:
  pkce: {enforced_for_public_clients: true}
  allowed_top_level_claims: [acr, name, herald_person, herald_roles]
  mirror_top_level_claims: false
log: {level: warn, leak_sensitive_values: false}
`, host, public, admin, issuer, login)
}

func (p *Provider) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(p.Issuer + ".well-known/openid-configuration")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return errors.New("the identity provider (Hydra) exited while starting (see its log)")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the identity provider (Hydra) was not ready at %s within 60s", p.Issuer)
		}
	}
}

// Close stops Hydra and the login app.
func (p *Provider) Close() error {
	p.closeOnce.Do(func() {
		_ = p.app.Close()
		if p.cmd.Process != nil {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if p.tmp {
			_ = os.RemoveAll(p.dir)
		}
	})
	return nil
}

// Client is an OAuth client of the provider.
type Client struct {
	ID string
	// Secret "" makes a public client (PKCE, no secret: heraldctl, tests).
	Secret       string
	RedirectURIs []string
	// Audience lists the audiences the client may ask tokens for.
	Audience []string
	// AccessTokenTTL shortens the client's access tokens (0: 15 min).
	AccessTokenTTL time.Duration
}

// RegisterClient adds (or replaces) an OAuth client.
func (p *Provider) RegisterClient(ctx context.Context, c Client) error {
	auth := "none"
	if c.Secret != "" {
		auth = "client_secret_basic"
	}
	body := map[string]any{"client_id": c.ID, "grant_types": []string{"authorization_code", "refresh_token"},
		"response_types": []string{"code"}, "redirect_uris": c.RedirectURIs, "scope": "openid profile offline_access",
		"audience": c.Audience, "token_endpoint_auth_method": auth, "post_logout_redirect_uris": c.RedirectURIs}
	if c.Secret != "" {
		body["client_secret"] = c.Secret
	}
	_ = p.admin(ctx, http.MethodDelete, "/admin/clients/"+url.PathEscape(c.ID), nil, nil)
	if err := p.admin(ctx, http.MethodPost, "/admin/clients", body, nil); err != nil {
		return fmt.Errorf("register client %s: %w", c.ID, err)
	}
	if c.AccessTokenTTL > 0 {
		ttl := c.AccessTokenTTL.String()
		if err := p.admin(ctx, http.MethodPut, "/admin/clients/"+url.PathEscape(c.ID)+"/lifespans",
			map[string]any{"authorization_code_grant_access_token_lifespan": ttl, "refresh_token_grant_access_token_lifespan": ttl}, nil); err != nil {
			return fmt.Errorf("set the token lifespan of client %s: %w", c.ID, err)
		}
	}
	return nil
}

// Token signs subject in at assurance level acr through the real
// authorization-code + PKCE flow of client (a public client registered
// with redirectURI), asking for audience, and returns the tokens.
func (p *Provider) Token(ctx context.Context, clientID, redirectURI, subject, acr, audience string) (*oauth2.Token, error) {
	// A sign-in is retried from the start, after a pause that grows: on a
	// loaded machine Hydra has been seen to refuse a flow's consent
	// verifier as used already, and to drop a request its server took
	// more than 10 s to answer (its fixed write timeout: the client sees
	// EOF), which an immediate retry meets again.
	var err error
	for attempt := range 4 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, err
			case <-time.After(time.Duration(attempt) * 2 * time.Second):
			}
		}
		var tok *oauth2.Token
		if tok, err = p.token(ctx, clientID, redirectURI, subject, acr, audience); err == nil {
			return tok, nil
		}
		if ctx.Err() != nil {
			break
		}
		p.log.WarnContext(ctx, "dev identity provider: sign-in failed, trying again", "subject", subject, "error", err.Error())
	}
	return nil, err
}

func (p *Provider) token(ctx context.Context, clientID, redirectURI, subject, acr, audience string) (*oauth2.Token, error) {
	conf := p.OAuth2(clientID, "", redirectURI)
	verifier := oauth2.GenerateVerifier()
	state := "state-" + oauth2.GenerateVerifier()[:16]
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("audience", audience), oauth2.SetAuthURLParam("login_hint", subject),
		oauth2.SetAuthURLParam("acr_values", acr))
	code, err := p.Authorize(ctx, authURL, redirectURI, nil)
	if err != nil {
		return nil, err
	}
	q := code.Query()
	if q.Get("state") != state {
		return nil, fmt.Errorf("sign in %s: the state came back changed", subject)
	}
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, fmt.Errorf("sign in %s: exchange the code: %w", subject, err)
	}
	return tok, nil
}

// Authorize follows an authorization URL as a browser would (with login
// via login_hint, or by submitting the login form with form when the
// login page asks), and returns the redirect to redirectURI it ends at
// (holding the code, or the error).
func (p *Provider) Authorize(ctx context.Context, authURL, redirectURI string, form url.Values) (*url.URL, error) {
	jar, _ := cookiejar.New(nil)
	var final *url.URL
	// No keep-alive: the transport never re-sends a request (a verifier
	// is single use) on a connection that broke.
	client := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirectURI) {
			final = req.URL
			return http.ErrUseLastResponse
		}
		return nil
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("authorize: %w", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if final == nil && form != nil && resp.StatusCode == http.StatusOK && resp.Request.URL.Path == "/login" {
		f := url.Values{"login_challenge": {resp.Request.URL.Query().Get("login_challenge")}}
		for k, v := range form {
			f[k] = v
		}
		resp, err = client.PostForm(p.LoginURL+"/login", f)
		if err != nil {
			return nil, fmt.Errorf("authorize: submit the login form: %w", err)
		}
		body, _ = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
	}
	if final == nil {
		return nil, fmt.Errorf("authorize: ended at %s (%d) without a redirect to %s: %.300s", resp.Request.URL.Redacted(), resp.StatusCode, redirectURI, body)
	}
	if e := final.Query().Get("error"); e != "" {
		return final, fmt.Errorf("authorize: %s: %s", e, final.Query().Get("error_description"))
	}
	return final, nil
}

// OAuth2 is the oauth2 configuration of a client of this provider.
func (p *Provider) OAuth2(clientID, secret, redirectURI string) *oauth2.Config {
	return &oauth2.Config{ClientID: clientID, ClientSecret: secret, RedirectURL: redirectURI,
		Scopes: []string{"openid", "profile"},
		Endpoint: oauth2.Endpoint{AuthURL: p.Issuer + "oauth2/auth", TokenURL: p.Issuer + "oauth2/token",
			AuthStyle: map[bool]oauth2.AuthStyle{true: oauth2.AuthStyleInParams, false: oauth2.AuthStyleInHeader}[secret == ""]}}
}

// admin calls Hydra's admin API.
func (p *Provider) admin(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.AdminURL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %.300s", method, path, resp.Status, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// user finds a user who may sign in.
func (p *Provider) user(subject string) (User, bool) {
	if u, ok := p.users[subject]; ok {
		return u, true
	}
	if p.others != nil && subject != "" {
		return p.others(subject)
	}
	return User{}, false
}

// Source returns a token source signing subject in at acr through client
// (see Token), keeping each token until a minute before it expires.
func (p *Provider) Source(clientID, redirectURI, subject, acr, audience string) func(context.Context) (string, error) {
	var mu sync.Mutex
	var tok *oauth2.Token
	return func(ctx context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if tok == nil || time.Until(tok.Expiry) < time.Minute {
			t, err := p.Token(ctx, clientID, redirectURI, subject, acr, audience)
			if err != nil {
				return "", err
			}
			tok = t
		}
		return tok.AccessToken, nil
	}
}

// --- the login and consent app ---

var loginTmpl = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Herald development sign-in</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto">
<h1>Herald development sign-in</h1>
<p><strong>Development only.</strong> Pick who you are; no password is asked.</p>
<form method="post" action="/login">
<input type="hidden" name="login_challenge" value="{{.Challenge}}">
<p><label>Person<br><select name="user">{{range .Users}}<option value="{{.Subject}}">{{.Label}}</option>{{end}}</select></label></p>
<p><label>Assurance level (acr)<br><select name="acr">{{range .Levels}}<option{{if eq . $.ACR}} selected{{end}}>{{.}}</option>{{end}}</select></label></p>
<p><button type="submit">Sign in</button></p>
</form></body></html>`))

type loginRequest struct {
	Skip        bool   `json:"skip"`
	Subject     string `json:"subject"`
	OIDCContext struct {
		LoginHint string   `json:"login_hint"`
		ACRValues []string `json:"acr_values"`
	} `json:"oidc_context"`
}

func (p *Provider) loginPage(w http.ResponseWriter, r *http.Request) {
	ch := r.URL.Query().Get("login_challenge")
	var lr loginRequest
	if err := p.admin(r.Context(), http.MethodGet, "/admin/oauth2/auth/requests/login?login_challenge="+url.QueryEscape(ch), nil, &lr); err != nil {
		p.fail(w, r, err)
		return
	}
	acr := DefaultACR
	if len(lr.OIDCContext.ACRValues) > 0 && slices.Contains(ACRLevels, lr.OIDCContext.ACRValues[0]) {
		acr = lr.OIDCContext.ACRValues[0]
	}
	if _, ok := p.user(lr.OIDCContext.LoginHint); ok {
		p.acceptLogin(w, r, ch, lr.OIDCContext.LoginHint, acr)
		return
	}
	type opt struct{ Subject, Label string }
	var users []opt
	for _, u := range p.users {
		users = append(users, opt{u.Subject, u.Label()})
	}
	slices.SortFunc(users, func(a, b opt) int { return strings.Compare(a.Subject, b.Subject) })
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = loginTmpl.Execute(w, map[string]any{"Challenge": ch, "Users": users, "Levels": ACRLevels, "ACR": acr})
}

func (p *Provider) loginSubmit(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	user, acr := r.PostForm.Get("user"), r.PostForm.Get("acr")
	if _, ok := p.user(user); !ok {
		http.Error(w, "unknown user "+user, http.StatusBadRequest)
		return
	}
	if !slices.Contains(ACRLevels, acr) {
		acr = DefaultACR
	}
	p.acceptLogin(w, r, r.PostForm.Get("login_challenge"), user, acr)
}

func (p *Provider) acceptLogin(w http.ResponseWriter, r *http.Request, challenge, subject, acr string) {
	var red struct {
		RedirectTo string `json:"redirect_to"`
	}
	err := p.admin(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/login/accept?login_challenge="+url.QueryEscape(challenge),
		map[string]any{"subject": subject, "acr": acr, "remember": false}, &red)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	http.Redirect(w, r, red.RedirectTo, http.StatusFound)
}

func (p *Provider) consent(w http.ResponseWriter, r *http.Request) {
	ch := r.URL.Query().Get("consent_challenge")
	var cr struct {
		Subject        string   `json:"subject"`
		ACR            string   `json:"acr"`
		RequestedScope []string `json:"requested_scope"`
		RequestedAud   []string `json:"requested_access_token_audience"`
	}
	if err := p.admin(r.Context(), http.MethodGet, "/admin/oauth2/auth/requests/consent?consent_challenge="+url.QueryEscape(ch), nil, &cr); err != nil {
		p.fail(w, r, err)
		return
	}
	u, _ := p.user(cr.Subject)
	claims := map[string]any{"acr": cr.ACR, "name": u.Name, "herald_person": u.PersonID, "herald_roles": u.Roles}
	var red struct {
		RedirectTo string `json:"redirect_to"`
	}
	err := p.admin(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/consent/accept?consent_challenge="+url.QueryEscape(ch),
		map[string]any{"grant_scope": cr.RequestedScope, "grant_access_token_audience": cr.RequestedAud, "remember": false,
			"session": map[string]any{"access_token": claims, "id_token": map[string]any{"name": u.Name, "herald_person": u.PersonID, "herald_roles": u.Roles}}}, &red)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	http.Redirect(w, r, red.RedirectTo, http.StatusFound)
}

func (p *Provider) logout(w http.ResponseWriter, r *http.Request) {
	var red struct {
		RedirectTo string `json:"redirect_to"`
	}
	ch := r.URL.Query().Get("logout_challenge")
	if err := p.admin(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/logout/accept?logout_challenge="+url.QueryEscape(ch), nil, &red); err != nil {
		p.fail(w, r, err)
		return
	}
	http.Redirect(w, r, red.RedirectTo, http.StatusFound)
}

func (p *Provider) fail(w http.ResponseWriter, r *http.Request, err error) {
	p.log.ErrorContext(r.Context(), "dev identity provider", "error", err.Error())
	http.Error(w, "sign-in failed: "+err.Error(), http.StatusBadGateway)
}
