package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/herald-health/herald/platform/authn"
	"github.com/herald-health/herald/platform/identity"
)

// DefaultClientID is heraldctl's OAuth client at the identity provider (a
// public client: PKCE, no secret).
const DefaultClientID = "heraldctl"

// RedirectURI is heraldctl's registered redirect: a loopback address, whose
// port the provider ignores (RFC 8252, 7.3), so heraldctl login listens on
// any free port.
const RedirectURI = "http://127.0.0.1/callback"

// savedToken is what heraldctl login keeps (mode 0600) for later commands.
type savedToken struct {
	Issuer      string    `json:"issuer"`
	AccessToken string    `json:"access_token"`
	Expiry      time.Time `json:"expiry"`
}

// tokenPath is where the token is kept: HERALD_CTL_TOKEN_FILE, else the
// user's config folder.
func tokenPath() (string, error) {
	if p := os.Getenv("HERALD_CTL_TOKEN_FILE"); p != "" {
		return p, nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no folder to keep the sign-in in (set HERALD_CTL_TOKEN_FILE): %w", err)
	}
	return filepath.Join(d, "herald", "token.json"), nil
}

// signedIn returns the person heraldctl is signed in as (HERALD_CTL_TOKEN,
// else the token heraldctl login kept), verified as the services verify
// it: signed by issuer's keys, for audience, not expired. nil when nobody
// is signed in. The issuer is the one configured (flag, HERALD_CTL_ISSUER,
// make run's), never the one the token names.
func signedIn(ctx context.Context, issuer, audience string, now time.Time) (*identity.Person, error) {
	raw, err := accessToken(now)
	if err != nil || raw == "" {
		return nil, err
	}
	if issuer == "" {
		return nil, usageError("-issuer is required to verify your sign-in (HERALD_CTL_ISSUER; no make run is running to take its provider from)")
	}
	cfg := authn.DefaultConfig()
	cfg.Issuer, cfg.Audience = issuer, audience
	a, err := authn.New(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	p, err := a.Verify(ctx, "", raw)
	if err != nil {
		return nil, fmt.Errorf("your sign-in does not verify against %s (run heraldctl login): %w", issuer, err)
	}
	return p, nil
}

// accessToken is the token commands call with: HERALD_CTL_TOKEN, else the
// one heraldctl login kept, if it has not expired. "" when there is none.
func accessToken(now time.Time) (string, error) {
	if t := os.Getenv("HERALD_CTL_TOKEN"); t != "" {
		return t, nil
	}
	p, err := tokenPath()
	if err != nil {
		return "", nil
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the sign-in %s: %w", p, err)
	}
	var t savedToken
	if err := json.Unmarshal(b, &t); err != nil {
		return "", fmt.Errorf("read the sign-in %s: %w (run heraldctl login again)", p, err)
	}
	if !t.Expiry.IsZero() && !now.Before(t.Expiry) {
		return "", fmt.Errorf("your sign-in expired at %s: run heraldctl login", t.Expiry.Local().Format(time.DateTime))
	}
	return t.AccessToken, nil
}

func loginCommand() command {
	return command{
		name:    "login",
		summary: "sign in with the identity provider; later commands act as you",
		usage: `heraldctl login [-issuer URL] [-client-id ID] [-acr LEVEL] [-login-hint WHO]: sign in (authorization code
with PKCE, the answer received on a loopback redirect) and keep the access token for later commands
(HERALD_CTL_TOKEN_FILE, default in your config folder, readable by you only).

  heraldctl login                 # while make run runs: its development provider
  heraldctl login -acr AAL3_ANY   # a stronger sign-in, for acknowledging CRITICAL alerts

heraldctl prints the address to open in a browser, then waits for the sign-in to come back.
`,
		run: func(ctx context.Context, e *env, args []string) error {
			fs := newFlags(loginCommand(), e)
			issuer := fs.String("issuer", e.addrs.issuer, "OpenID Connect issuer (default: make run's development provider)")
			clientID := fs.String("client-id", DefaultClientID, "heraldctl's client id at the issuer")
			port := fs.Int("port", 0, "loopback port of the redirect (http://127.0.0.1:PORT/callback; 0: any free one)")
			acr := fs.String("acr", "", "assurance level to ask for (acr_values)")
			hint := fs.String("login-hint", "", "who is signing in (login_hint), when the provider takes one")
			audience := fs.String("audience", "herald", "the audience of Herald's API")
			if err := parseArgs(fs, args); err != nil {
				return err
			}
			if *issuer == "" {
				return fmt.Errorf("-issuer is required (no make run is running to take its provider from)")
			}
			tok, err := login(ctx, e, *issuer, *clientID, *port, *acr, *hint, *audience)
			if err != nil {
				return err
			}
			p, err := tokenPath()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			b, _ := json.Marshal(savedToken{Issuer: *issuer, AccessToken: tok.AccessToken, Expiry: tok.Expiry})
			if err := os.WriteFile(p, b, 0o600); err != nil {
				return fmt.Errorf("keep the sign-in in %s: %w", p, err)
			}
			fmt.Fprintf(e.out, "signed in; the token is kept in %s until %s\n", p, tok.Expiry.Local().Format(time.DateTime))
			return nil
		},
	}
}

// login runs the authorization-code flow with PKCE on a loopback redirect.
func login(ctx context.Context, e *env, issuer, clientID string, port int, acr, hint, audience string) (*oauth2.Token, error) {
	provider, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		return nil, fmt.Errorf("discover the issuer %s: %w", issuer, err)
	}
	lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, fmt.Errorf("listen for the sign-in on 127.0.0.1:%d (-port): %w", port, err)
	}
	conf := &oauth2.Config{ClientID: clientID, Endpoint: provider.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "profile"},
		RedirectURL: fmt.Sprintf("http://%s/callback", lis.Addr())}
	conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	verifier, state := oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("audience", audience)}
	if acr != "" {
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", acr))
	}
	if hint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", hint))
	}
	type result struct {
		code string
		err  error
	}
	got := make(chan result, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		res := result{code: q.Get("code")}
		switch {
		case q.Get("error") != "":
			res.err = fmt.Errorf("the provider refused the sign-in: %s %s", q.Get("error"), q.Get("error_description"))
		case q.Get("state") != state:
			res.err = errors.New("the sign-in came back with another state: start again")
		}
		if res.err != nil {
			http.Error(w, res.err.Error(), http.StatusBadRequest)
		} else {
			fmt.Fprintln(w, "Signed in to heraldctl. You can close this window.")
		}
		select {
		case got <- res:
		default:
		}
	})}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Close()
	fmt.Fprintf(e.out, "open this address in a browser to sign in:\n\n  %s\n\n", conf.AuthCodeURL(state, opts...))
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var res result
	select {
	case res = <-got:
	case <-ctx.Done():
		return nil, errors.New("no sign-in came back within 5 minutes")
	}
	if res.err != nil {
		return nil, res.err
	}
	tok, err := conf.Exchange(ctx, res.code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, fmt.Errorf("exchange the sign-in for a token: %w", err)
	}
	return tok, nil
}
