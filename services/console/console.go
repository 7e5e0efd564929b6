// Package console is Herald's web console, the fifth deployable: where
// clinicians accept findings (worklist, alert page, acknowledge, decline,
// record an action), fail-safe officers work their trust's queue, and
// safety leads review compliance and the RCR audit. It signs people in with
// OpenID Connect (authorization code + PKCE) and calls the acknowledgement
// and rules services over gRPC with mutual TLS, as the signed-in person
// (their access token as a bearer); it never reads another service's store.
//
// This package is the service's one composition root: cmd/console, the
// all-in-one dev binary and the tests start it through Run or New.
package console

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/grpc"

	"github.com/herald-health/herald/platform/acklink"
	"github.com/herald-health/herald/platform/alertref"
	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/mtls"
	"github.com/herald-health/herald/platform/sealing"
	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/platform/telemetry"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
	"github.com/herald-health/herald/services/console/internal/oidcauth"
	"github.com/herald-health/herald/services/console/internal/reporting"
	"github.com/herald-health/herald/services/console/internal/web"
)

// ServiceName is the telemetry service name.
const ServiceName = "herald-console"

// Config is the service's configuration.
type Config struct {
	// Security is the transport policy (-profile, -insecure).
	Security servicemain.Security
	// HTTPAddr is where the pages listen; with HTTPTLS over HTTPS
	// (settings http-tls-cert, http-tls-key; browsers are not asked for a
	// certificate).
	HTTPAddr        string
	HTTPTLS         mtls.Files
	PublicURL       string
	Acknowledgement grpcserver.ClientConfig
	Rules           grpcserver.ClientConfig
	// Client is the console's own identity and CA bundle for the gRPC
	// calls (mTLS).
	Client mtls.Files
	// OIDC sign-in.
	OIDCIssuer       string
	OIDCClientID     string
	OIDCClientSecret string
	OIDCPersonClaim  string
	OIDCRolesClaim   string
	// OIDCAudience, when set, is asked for as the access token's audience
	// (the audience Herald's services verify, setting oidc-audience of
	// platform/authn).
	OIDCAudience string
	// SessionKey seals session cookies (>= 32 bytes; the console's own).
	SessionKey  string
	SessionIdle time.Duration
	SessionMax  time.Duration
	// AckLinkPublicKeys, when set, is the file (or directory) of the
	// Ed25519 public keys acknowledge links are verified with (as
	// acknowledgement does), so emailed links (<public-url>/ack/<token>)
	// land on the alert page after sign-in.
	AckLinkPublicKeys string
	// PostgresURL, when set, is the reporting store (PostgreSQL): the
	// console migrates it and runs its projector, which reads Log in its
	// own consumer group. Without it the compliance and RCR pages say
	// reporting is not configured.
	PostgresURL string
	// Log is the event log the projector reads (only with PostgresURL).
	Log eventlog.Config
	// ReferenceKey keys the alert references the store records (the same
	// as acknowledgement's; none: the store records no references).
	ReferenceKey string
	// Keys are the trusts' patient-data keys (platform/sealing): the alert
	// page opens the details acknowledgement returns sealed. Without them
	// the page says the details cannot be opened here.
	Keys sealing.Files
}

// DefaultConfig returns loopback addresses and 15-minute idle, 8-hour
// absolute sessions.
func DefaultConfig() Config {
	return Config{
		Security:        servicemain.Security{Profile: servicemain.ProfileProduction},
		HTTPAddr:        "127.0.0.1:8443",
		PublicURL:       "https://127.0.0.1:8443",
		Acknowledgement: grpcserver.ClientConfig{Addr: "127.0.0.1:7003"},
		Rules:           grpcserver.ClientConfig{Addr: "127.0.0.1:7002"},
		OIDCPersonClaim: "sub",
		OIDCRolesClaim:  "herald_roles",
		SessionIdle:     15 * time.Minute,
		SessionMax:      8 * time.Hour,
		Log:             eventlog.DefaultConfig(),
	}
}

// RegisterFlags binds the settings to fs (environment fallback HERALD_<FLAG>).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Security.RegisterFlags(fs)
	c.Acknowledgement.RegisterFlags(fs, "acknowledgement")
	c.Rules.RegisterFlags(fs, "rules")
	c.Client.RegisterFlags(fs, "grpc-")
	c.Keys.RegisterFlags(fs)
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "console listen address")
	pagesListener.RegisterFlags(fs, &c.HTTPTLS)
	fs.StringVar(&c.PublicURL, "public-url", c.PublicURL, "external base URL of the console (OIDC redirect)")
	fs.StringVar(&c.OIDCIssuer, "oidc-issuer", c.OIDCIssuer, "OpenID Connect issuer URL")
	fs.StringVar(&c.OIDCClientID, "oidc-client-id", c.OIDCClientID, "OpenID Connect client id")
	config.SecretFile(fs, &c.OIDCClientSecret, "oidc-client-secret", "OpenID Connect client secret")
	fs.StringVar(&c.OIDCPersonClaim, "oidc-person-claim", c.OIDCPersonClaim, "ID-token claim holding the person id")
	fs.StringVar(&c.OIDCRolesClaim, "oidc-roles-claim", c.OIDCRolesClaim, "ID-token claim holding the roles, each TRUST:role (TRUST * network-wide), as Herald's services read them")
	fs.StringVar(&c.OIDCAudience, "oidc-audience", c.OIDCAudience, "audience to ask the provider for in the access token the console forwards (empty: none asked for)")
	config.SecretFile(fs, &c.SessionKey, "session-key", "key sealing session cookies (>= 32 bytes, the console's own)")
	fs.DurationVar(&c.SessionIdle, "session-idle", c.SessionIdle, "a session unused this long ends")
	fs.DurationVar(&c.SessionMax, "session-max", c.SessionMax, "every session ends after this long")
	fs.StringVar(&c.AckLinkPublicKeys, "ack-link-public-keys-file", c.AckLinkPublicKeys, "file (or directory) of the Ed25519 public keys acknowledge links are verified with, so emailed links land here (optional)")
	config.SecretFile(fs, &c.PostgresURL, "postgres-url", "PostgreSQL URL of the reporting store (optional: without it the compliance and RCR pages say reporting is not configured)")
	fs.StringVar(&c.PostgresURL, "postgres-url", c.PostgresURL, "PostgreSQL URL of the reporting store, given inline (development; production: postgres-url-file)")
	config.SecretFile(fs, &c.ReferenceKey, "reference-key", "HMAC key of the alert references (>= 32 bytes, acknowledgement's; none: the reporting store records no references)")
	c.Log.RegisterFlags(fs)
}

// pagesListener is the pages' HTTPS listener.
var pagesListener = servicemain.Listener{Name: "http", What: "console pages"}

// hops are every connection the console serves or makes: its pages, its
// gRPC calls, and (only with a reporting store) the projector's Kafka.
func (c Config) hops() []servicemain.Hop {
	calls := servicemain.HopFunc(func() string {
		if c.Client.CertFile == "" {
			return "gRPC calls to acknowledgement and rules are not mutual TLS (settings grpc-tls-cert, grpc-tls-key, grpc-tls-ca)"
		}
		return ""
	})
	hops := []servicemain.Hop{pagesListener.Hop(c.HTTPTLS, c.HTTPAddr), calls}
	if c.PostgresURL != "" {
		hops = append(hops, c.Log)
	}
	return hops
}

// Validate names the setting at fault.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	for _, err := range []error{c.Acknowledgement.Validate("acknowledgement"), c.Rules.Validate("rules"),
		c.Client.Validate("grpc-tls-cert", "grpc-tls-key"), pagesListener.Validate(c.HTTPTLS), c.Security.Check(c.hops()...)} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if c.HTTPAddr == "" || c.PublicURL == "" {
		bad("settings http-addr and public-url are required")
	}
	if c.OIDCIssuer == "" || c.OIDCClientID == "" {
		bad("settings oidc-issuer and oidc-client-id are required: people sign in with OpenID Connect")
	}
	if len(c.SessionKey) < oidcauth.MinSessionKeyLen {
		bad("setting session-key must be at least %d bytes", oidcauth.MinSessionKeyLen)
	}
	if c.SessionIdle <= 0 || c.SessionMax <= 0 {
		bad("settings session-idle and session-max must be positive")
	}
	if c.PostgresURL != "" {
		if err := c.Log.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("the reporting projector's event log: %w", err))
		}
	}
	if err := c.Keys.Validate(false); err != nil {
		errs = append(errs, err)
	}
	if c.ReferenceKey != "" && len(c.ReferenceKey) < alertref.MinKeyLen {
		bad("setting reference-key must be at least %d bytes", alertref.MinKeyLen)
	}
	return errors.Join(errs...)
}

// Deps are the service's injected dependencies; zero values get defaults.
type Deps struct {
	Logger    *slog.Logger
	Clock     clock.Clock
	Telemetry *telemetry.Telemetry
	// Reporting is the compliance read model. nil: the reporting store of
	// Config.PostgresURL when set, else the pages say it is not configured.
	Reporting web.Reporting
	// DemoUsers are offered on the sign-in page (development profile only).
	DemoUsers []DemoUser
	// Extra pages (development: the captured messages of make run).
	Extra map[string]http.Handler
	// OIDCClient talks to the identity provider (its CA); nil: default.
	OIDCClient *http.Client
	// KEK unwraps the keyring's data keys instead of the kek-file (a KMS).
	KEK sealing.KEK
}

// Service is a started console.
type Service struct {
	life *servicemain.Lifecycle
	log  *slog.Logger
	http *servicemain.HTTPServer
}

// New validates cfg, discovers the identity provider, connects the gRPC
// clients and binds the listener, registering each release as it goes.
func New(ctx context.Context, cfg Config, deps Deps) (s *Service, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	deps.Logger, deps.Clock, deps.Telemetry = servicemain.Defaults(ServiceName, deps.Logger, deps.Clock, deps.Telemetry)
	log := deps.Logger
	s = &Service{life: servicemain.NewLifecycle(log), log: log}
	defer s.life.Rollback(&err)
	var src *mtls.Source
	if !cfg.Client.IsZero() {
		if src, err = mtls.Load(cfg.Client, mtls.Options{Clock: deps.Clock, Logger: log}); err != nil {
			return nil, fmt.Errorf("settings grpc-tls-*: %w", err)
		}
	}
	dial := func(c grpcserver.ClientConfig) (*grpc.ClientConn, error) {
		conn, err := grpcserver.Dial(ctx, c.Addr, deps.Telemetry, grpcserver.ClientTLS(src, c.ServerName))
		if err != nil {
			return nil, err
		}
		s.life.OnClose("grpc "+c.Addr, conn.Close)
		return conn, nil
	}
	ackConn, err := dial(cfg.Acknowledgement)
	if err != nil {
		return nil, fmt.Errorf("setting acknowledgement-addr: %w", err)
	}
	rulesConn, err := dial(cfg.Rules)
	if err != nil {
		return nil, fmt.Errorf("setting rules-addr: %w", err)
	}
	auth, err := oidcauth.New(ctx, oidcauth.Config{Issuer: cfg.OIDCIssuer, ClientID: cfg.OIDCClientID,
		ClientSecret: cfg.OIDCClientSecret, PublicURL: cfg.PublicURL, SessionKey: []byte(cfg.SessionKey),
		PersonClaim: cfg.OIDCPersonClaim, RolesClaim: cfg.OIDCRolesClaim, Audience: cfg.OIDCAudience, IdleTimeout: cfg.SessionIdle,
		MaxAge: cfg.SessionMax, HTTPClient: deps.OIDCClient, AllowLoginHint: cfg.Security.Development()}, deps.Clock, log)
	if err != nil {
		return nil, err
	}
	if cfg.PostgresURL != "" && deps.Reporting == nil {
		if deps.Reporting, err = s.startReporting(ctx, cfg, deps); err != nil {
			return nil, err
		}
	}
	wcfg := web.Config{InsecureTransport: src == nil, HSTS: cfg.HTTPTLS.CertFile != "", Extra: deps.Extra}
	if cfg.Security.Development() {
		wcfg.DemoUsers = deps.DemoUsers
	}
	keys, err := cfg.Keys.Load(deps.KEK)
	if err != nil {
		return nil, err
	}
	if keys != nil {
		wcfg.Details = keys
	} else {
		log.WarnContext(ctx, "no patient-data keys (settings keyring-file, kek-file): the alert page cannot show patient details")
	}
	if cfg.AckLinkPublicKeys != "" {
		links, err := acklink.LoadVerifier(cfg.AckLinkPublicKeys)
		if err != nil {
			return nil, fmt.Errorf("acknowledge links (setting ack-link-public-keys-file): %w", err)
		}
		wcfg.LinkAlert = func(token string, now time.Time) (string, error) {
			c, err := links.Verify(token, now)
			return c.AlertID, err
		}
	}
	pages, err := web.New(wcfg, auth, ackv1.NewAcknowledgementServiceClient(ackConn), rulesv1.NewRulesServiceClient(rulesConn),
		deps.Reporting, deps.Clock, log)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := pagesListener.TLS(cfg.HTTPTLS, mtls.Options{Clock: deps.Clock, Logger: log})
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		tlsCfg.NextProtos = []string{"h2", "http/1.1"}
	}
	limits := servicemain.DefaultHTTPLimits()
	limits.MaxHeaderBytes = 32 << 10
	if s.http, err = servicemain.ListenHTTP(cfg.HTTPAddr, pages, tlsCfg, limits); err != nil {
		return nil, fmt.Errorf("console pages (setting http-addr): %w", err)
	}
	s.life.OnStop("http server", s.http.Close)
	s.life.Go("http server", s.http.Serve)
	return s, nil
}

// startReporting opens (and migrates) the reporting store and runs its
// projector as one of the service's tasks.
func (s *Service) startReporting(ctx context.Context, cfg Config, deps Deps) (web.Reporting, error) {
	var ref func(alertID string) string
	if cfg.ReferenceKey != "" {
		key, err := alertref.New([]byte(cfg.ReferenceKey))
		if err != nil {
			return nil, fmt.Errorf("setting reference-key: %w", err)
		}
		ref = key.Ref
	}
	store, err := reporting.Open(ctx, cfg.PostgresURL, deps.Clock)
	if err != nil {
		return nil, fmt.Errorf("reporting store (setting postgres-url): %w", err)
	}
	s.life.OnClose("reporting store", func() error { store.Close(); return nil })
	proj := reporting.NewProjector(store, reporting.ProjectorConfig{Log: cfg.Log, Reference: ref,
		Logger: deps.Logger, Telemetry: deps.Telemetry})
	s.life.Go("reporting projector", proj.Run)
	return storeReports{store: store}, nil
}

// Addr returns the bound address of the pages.
func (s *Service) Addr() string { return s.http.Addr() }

// Addrs returns the bound addresses: "http".
func (s *Service) Addrs() map[string]string { return map[string]string{"http": s.http.Addr()} }

// DemoUser is a development identity the sign-in page offers.
type DemoUser = web.DemoUser

// Reporting is the compliance read model the safety lead's pages read (see
// internal/web/reporting.go for its types).
type Reporting = web.Reporting

// Run serves until ctx is done, then releases everything.
func (s *Service) Run(ctx context.Context) error {
	s.log.InfoContext(ctx, "console started", slog.String("http", s.http.Addr()))
	return s.life.Run(ctx)
}

// Run builds the service and runs it until ctx is done.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	s, err := New(ctx, cfg, deps)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// Stop releases what New acquired, for a composer that will not Run it.
func (s *Service) Stop(ctx context.Context) error { return s.life.Stop(ctx) }
