// Package authn authenticates the people who call Herald's gRPC services:
// it verifies the OpenID Connect access token (a JWT in the
// "authorization: Bearer" metadata) against the issuer's signing keys
// (JWKS, fetched once and cached; refetched when a token names an unknown
// key), checking signature, issuer, audience, expiry and the authentication
// assurance level (acr) each method requires. It builds an
// identity.Person, asks a RoleBinder (owned here, implemented by the role
// binding of authorization) for the person's Herald id and roles, and puts
// an identity.Caller into the call's context, with the service that relayed
// the call from its verified mTLS certificate (grpcserver.PeerIdentity).
//
// A call without a token from a service with a verified certificate goes
// through as Caller{Service: ...}: a service acting on its own account, for
// authorization to judge. A call with neither is Unauthenticated. A token
// that fails verification is Unauthenticated whatever the certificate.
package authn

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/identity"
)

// DefaultACRLevels are the assurance levels in ascending order, as NHS CIS2
// names them (AAL1 password, AAL2 a second factor, AAL3 a smartcard or
// another hardware authenticator).
var DefaultACRLevels = []string{"AAL1_USERPASS", "AAL2_OR_ABOVE", "AAL3_ANY"}

// Config is how tokens are verified. Its flags (RegisterFlags) are the same
// in every service.
type Config struct {
	// Issuer is the OpenID Connect issuer URL (its discovery document names
	// the JWKS). Empty: no person can call (development only).
	Issuer string
	// Audience must be in every token's aud claim (Herald's API).
	Audience string
	// JWKSURL, when set, skips discovery and fetches keys from here.
	JWKSURL string
	// ACRLevels are the assurance levels in ascending order; a token's acr
	// not in the list is below all of them.
	ACRLevels []string
	// MinACR is the level every call for a person needs ("" none).
	MinACR string
	// MethodACR raises the level for some methods (full gRPC method name,
	// e.g. /herald.acknowledgement.v1.AcknowledgementService/Acknowledge).
	MethodACR map[string]string
	// PersonClaim and RolesClaim are the token claims ClaimBinder reads:
	// the person's Herald id and their roles as "TRUST:role" strings.
	PersonClaim string
	RolesClaim  string
}

// DefaultConfig is the audience "herald", the CIS2 levels, and reading a
// CRITICAL acknowledgement's commands at AAL2 while AAL1 reads.
func DefaultConfig() Config {
	ack := "/herald.acknowledgement.v1.AcknowledgementService/"
	return Config{
		Audience:  "herald",
		ACRLevels: slices.Clone(DefaultACRLevels),
		MinACR:    "AAL1_USERPASS",
		MethodACR: map[string]string{
			ack + "Acknowledge": "AAL2_OR_ABOVE", ack + "Decline": "AAL2_OR_ABOVE",
			ack + "RecordAction": "AAL2_OR_ABOVE", ack + "Close": "AAL2_OR_ABOVE",
		},
		PersonClaim: "herald_person",
		RolesClaim:  "herald_roles",
	}
}

// RegisterFlags binds the settings to fs: oidc-issuer, oidc-audience,
// oidc-jwks-url, oidc-acr-levels, oidc-min-acr, oidc-method-acr,
// oidc-person-claim-api and oidc-roles-claim (environment HERALD_OIDC_...).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Issuer, "oidc-issuer", c.Issuer, "OpenID Connect issuer whose access tokens people call with (required in the production profile)")
	fs.StringVar(&c.Audience, "oidc-audience", c.Audience, "audience every access token must name")
	fs.StringVar(&c.JWKSURL, "oidc-jwks-url", c.JWKSURL, "the issuer's JWKS URL (empty: from its discovery document)")
	fs.Var((*config.StringList)(&c.ACRLevels), "oidc-acr-levels", "authentication assurance levels (acr), lowest first")
	fs.StringVar(&c.MinACR, "oidc-min-acr", c.MinACR, "assurance level every call for a person needs")
	fs.Var((*methodLevels)(&c.MethodACR), "oidc-method-acr", "higher assurance levels per method: /pkg.Service/Method=LEVEL,... (replaces the defaults)")
	fs.StringVar(&c.PersonClaim, "oidc-person-claim-api", c.PersonClaim, "access-token claim holding the person's Herald id (claim role binding)")
	fs.StringVar(&c.RolesClaim, "oidc-roles-claim", c.RolesClaim, "access-token claim holding the person's roles as TRUST:role (claim role binding)")
}

// Validate names the setting at fault. production requires an issuer.
func (c Config) Validate(production bool) error {
	if c.Issuer == "" {
		if production {
			return errors.New("setting oidc-issuer (HERALD_OIDC_ISSUER) is required in the production profile: people's calls are verified against it")
		}
		return nil
	}
	if c.Audience == "" {
		return errors.New("setting oidc-audience is required with oidc-issuer")
	}
	for _, l := range append([]string{c.MinACR}, mapValues(c.MethodACR)...) {
		if l != "" && !slices.Contains(c.ACRLevels, l) {
			return fmt.Errorf("assurance level %q (settings oidc-min-acr, oidc-method-acr) is not in oidc-acr-levels %v", l, c.ACRLevels)
		}
	}
	return nil
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// RoleBinder fills a verified person's PersonID and Roles (from a role
// binding file, the trust's directory or the token's claims). An error of
// kind fault.ErrPermissionDenied refuses the call with that message.
type RoleBinder interface {
	Bind(ctx context.Context, p *identity.Person) error
}

// Option changes New.
type Option func(*Authenticator)

// AllowAnonymous lets a call with neither a token nor a client
// certificate through as an empty Caller: for a development system whose
// services talk plaintext (no certificate names them). Never in production.
func AllowAnonymous() Option { return func(a *Authenticator) { a.anonymous = true } }

// WithClock verifies expiry against now instead of the wall clock.
func WithClock(now func() time.Time) Option { return func(a *Authenticator) { a.now = now } }

// Authenticator verifies tokens and makes the interceptors.
type Authenticator struct {
	cfg    Config
	binder RoleBinder
	verify *oidc.IDTokenVerifier
	now    func() time.Time
	rank   map[string]int
	// anonymous: see AllowAnonymous.
	anonymous bool

	// seen caches verified tokens until they expire: a client calls with
	// the same token many times, and a signature check costs tens of
	// microseconds (the cache keeps verification well under 0.2 ms p99).
	mu   sync.Mutex
	seen map[[32]byte]verified
}

// verified is a token whose signature, issuer and audience were checked.
type verified struct {
	issuer, subject string
	expiry          time.Time
	claims          map[string]any
}

// maxSeen bounds the verified-token cache; when full it starts again.
const maxSeen = 10000

// New returns an authenticator of cfg. With an issuer it discovers the
// issuer's keys (an unreachable issuer is an error naming it) unless
// cfg.JWKSURL names them; the keys are cached and refetched when a token
// names one not in the cache.
func New(ctx context.Context, cfg Config, binder RoleBinder, opts ...Option) (*Authenticator, error) {
	a := &Authenticator{cfg: cfg, binder: binder, now: time.Now, rank: map[string]int{}, seen: map[[32]byte]verified{}}
	for _, o := range opts {
		o(a)
	}
	for i, l := range cfg.ACRLevels {
		a.rank[l] = i + 1
	}
	if cfg.Issuer == "" {
		return a, nil
	}
	jwks := cfg.JWKSURL
	if jwks == "" {
		p, err := oidc.NewProvider(ctx, cfg.Issuer)
		if err != nil {
			return nil, fmt.Errorf("discover OpenID issuer %s (setting oidc-issuer): %w", cfg.Issuer, err)
		}
		var meta struct {
			JWKS string `json:"jwks_uri"`
		}
		if err := p.Claims(&meta); err != nil || meta.JWKS == "" {
			return nil, fmt.Errorf("OpenID issuer %s names no jwks_uri (setting oidc-issuer)", cfg.Issuer)
		}
		jwks = meta.JWKS
	}
	// The key set outlives ctx (it refetches on unknown keys).
	keys := oidc.NewRemoteKeySet(context.WithoutCancel(ctx), jwks)
	a.verify = oidc.NewVerifier(cfg.Issuer, keys, &oidc.Config{ClientID: cfg.Audience, Now: func() time.Time { return a.now() },
		SupportedSigningAlgs: []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.PS256}})
	return a, nil
}

// ForService is the authentication a service's composition root installs,
// made once authorization (authz.Configure) has read the role bindings:
// given when the caller supplies one (component tests), otherwise an
// Authenticator with cfg checked against the profile (the production
// profile needs an issuer), binder (nil: ClaimBinder of cfg's claims) and,
// in the development profile when clients present no certificates,
// anonymous calls let through (AllowAnonymous).
func ForService(ctx context.Context, given grpcserver.Option, cfg Config, development, clientCerts bool, log *slog.Logger) func(binder RoleBinder) (grpcserver.Option, error) {
	return func(binder RoleBinder) (grpcserver.Option, error) {
		if given != nil {
			return given, nil
		}
		if err := cfg.Validate(!development); err != nil {
			return nil, err
		}
		if binder == nil {
			binder = ClaimBinder{PersonClaim: cfg.PersonClaim, RolesClaim: cfg.RolesClaim}
		}
		var opts []Option
		if development && !clientCerts {
			opts = append(opts, AllowAnonymous())
			log.WarnContext(ctx, "development profile: gRPC calls without a token or a client certificate are let through anonymously")
		}
		if development && cfg.Issuer == "" {
			log.WarnContext(ctx, "development profile without an OpenID issuer (setting oidc-issuer): no person can call, commands are refused")
		}
		a, err := New(ctx, cfg, binder, opts...)
		if err != nil {
			return nil, err
		}
		return a.ServerOption(), nil
	}
}

// claimsKey carries the verified token's claims to the RoleBinder.
type claimsKey struct{}

// Claims returns the verified access token's claims during Bind.
func Claims(ctx context.Context) map[string]any {
	c, _ := ctx.Value(claimsKey{}).(map[string]any)
	return c
}

// Verify checks a raw access token for method and returns the person it
// was issued to, bound to their Herald id and roles. Errors are fault
// kinds: Unauthenticated (the token is not good), PermissionDenied (too
// low an assurance level, or the binder refused).
func (a *Authenticator) Verify(ctx context.Context, method, raw string) (*identity.Person, error) {
	if a.verify == nil {
		return nil, fault.Unauthenticated("this service verifies no person's token (no OpenID issuer is configured: setting oidc-issuer)")
	}
	v, err := a.token(ctx, raw)
	if err != nil {
		return nil, err
	}
	claims := v.claims
	p := &identity.Person{Issuer: v.issuer, Subject: v.subject}
	p.ACR, _ = claims["acr"].(string)
	p.DisplayName, _ = claims["name"].(string)
	p.TokenID, _ = claims["jti"].(string)
	// What a role-binding file (platform/authz) may bind by: the email,
	// the role claim's values, and the Herald id the token asserts (kept
	// only when no binding names the person).
	p.Email, _ = claims["email"].(string)
	p.RoleClaims = stringsOf(claims[a.cfg.RolesClaim])
	p.PersonID, _ = claims[a.cfg.PersonClaim].(string)
	if need := a.required(method); need != "" && a.rank[p.ACR] < a.rank[need] {
		got := p.ACR
		if got == "" {
			got = "none"
		}
		return nil, fault.PermissionDenied(fmt.Sprintf("%s needs authentication assurance level %s; the access token asserts %s: sign in again with a stronger method", method, need, got))
	}
	if a.binder != nil {
		if err := a.binder.Bind(context.WithValue(ctx, claimsKey{}, claims), p); err != nil {
			return nil, fmt.Errorf("bind roles of %s: %w", p.Subject, err)
		}
	}
	return p, nil
}

// token verifies raw, or finds it verified before and not yet expired.
func (a *Authenticator) token(ctx context.Context, raw string) (verified, error) {
	h := sha256.Sum256([]byte(raw))
	a.mu.Lock()
	v, ok := a.seen[h]
	a.mu.Unlock()
	if ok {
		if now := a.now(); now.Before(v.expiry) {
			return v, nil
		}
	}
	tok, err := a.verify.Verify(ctx, raw)
	if err != nil {
		return verified{}, fault.Unauthenticated(reason(err, a.cfg))
	}
	v = verified{issuer: tok.Issuer, subject: tok.Subject, expiry: tok.Expiry}
	if err := tok.Claims(&v.claims); err != nil {
		return verified{}, fault.Unauthenticated("the access token's claims cannot be read")
	}
	a.mu.Lock()
	if len(a.seen) >= maxSeen {
		clear(a.seen)
	}
	a.seen[h] = v
	a.mu.Unlock()
	return v, nil
}

func (a *Authenticator) required(method string) string {
	if l, ok := a.cfg.MethodACR[method]; ok && a.rank[l] > a.rank[a.cfg.MinACR] {
		return l
	}
	return a.cfg.MinACR
}

// reason says why go-oidc refused a token, without the token.
func reason(err error, cfg Config) string {
	var exp *oidc.TokenExpiredError
	msg := err.Error()
	switch {
	case errors.As(err, &exp):
		return "the access token expired at " + exp.Expiry.UTC().Format(time.RFC3339) + ": sign in again (heraldctl login)"
	case strings.Contains(msg, "expected audience"):
		return "the access token is not for this audience (want " + cfg.Audience + ")"
	case strings.Contains(msg, "issued by a different provider"), strings.Contains(msg, "id token issued by"):
		return "the access token was not issued by " + cfg.Issuer
	case strings.Contains(msg, "malformed"):
		return "the access token is not a well-formed JWT"
	case strings.Contains(msg, "signature"), strings.Contains(msg, "verify"):
		return "the access token's signature does not verify against the issuer's keys"
	}
	return "the access token is not valid"
}

// public methods need no caller: health checks and reflection.
func public(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.Health/") || strings.HasPrefix(method, "/grpc.reflection.")
}

// authenticate returns ctx with the caller of the call in it.
func (a *Authenticator) authenticate(ctx context.Context, method string) (context.Context, error) {
	service, _ := grpcserver.PeerIdentity(ctx)
	raw, present, err := bearer(ctx)
	if err != nil {
		return nil, err
	}
	if !present {
		if service == "" && !a.anonymous {
			return nil, status.Error(codes.Unauthenticated, "no credentials: call with a client certificate (a service) or an OpenID Connect access token in 'authorization: Bearer <token>' (a person: heraldctl login)")
		}
		if service == "" {
			// Anonymous (development, AllowAnonymous): no caller, so that
			// what runs after authentication treats the call as it would
			// without authentication (authorization off: the development
			// person; on: Unauthenticated).
			return ctx, nil
		}
		return identity.NewContext(ctx, identity.Caller{Service: service}), nil
	}
	p, err := a.Verify(ctx, method, raw)
	if err != nil {
		return nil, grpcserver.Status(err)
	}
	return identity.NewContext(ctx, identity.Caller{Person: p, Service: service}), nil
}

// bearer returns the token of the authorization metadata.
func bearer(ctx context.Context) (string, bool, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", false, nil
	}
	if len(vals) > 1 {
		return "", false, status.Error(codes.Unauthenticated, "more than one authorization header")
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(tok) == "" {
		return "", false, status.Error(codes.Unauthenticated, "the authorization header must be 'Bearer <access token>'")
	}
	return strings.TrimSpace(tok), true, nil
}

// Unary returns the unary interceptor.
func (a *Authenticator) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if public(info.FullMethod) {
			return handler(ctx, req)
		}
		ctx, err := a.authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// Stream returns the stream interceptor.
func (a *Authenticator) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if public(info.FullMethod) {
			return handler(srv, ss)
		}
		ctx, err := a.authenticate(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, grpcserver.StreamWithContext(ctx, ss))
	}
}

// ServerOption is the interceptors as a grpcserver option: authentication
// runs first among the added interceptors.
func (a *Authenticator) ServerOption() grpcserver.Option {
	return grpcserver.WithInterceptors([]grpc.UnaryServerInterceptor{a.Unary()}, []grpc.StreamServerInterceptor{a.Stream()})
}

// methodLevels is a flag.Value of /pkg.Service/Method=LEVEL pairs.
type methodLevels map[string]string

func (m *methodLevels) String() string {
	var parts []string
	for k, v := range *m {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func (m *methodLevels) Set(s string) error {
	out := map[string]string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		k, v, ok := strings.Cut(p, "=")
		if !ok || !strings.HasPrefix(k, "/") || v == "" {
			return fmt.Errorf("%q is not /pkg.Service/Method=LEVEL", p)
		}
		out[k] = v
	}
	*m = out
	return nil
}

// stringsOf is a claim's string values (a string or a list of them).
func stringsOf(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
