// Package allinone is the composition root of the all-in-one binary behind
// `make run`: Herald's four services in one process, on an embedded
// Kafka-protocol broker and Redis (or real ones when configured), with the
// demo trusts' policies sped up, a traffic simulator, a live feed of the
// event log on stdout and a web page of alerts and captured messages.
package allinone

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/herald-health/herald/cmd/internal/ctl"
	"github.com/herald-health/herald/cmd/internal/runstate"
	"github.com/herald-health/herald/platform/acklink"
	"github.com/herald-health/herald/platform/authn"
	"github.com/herald-health/herald/platform/authz/devbindings"
	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/platform/devca"
	"github.com/herald-health/herald/platform/devidp"
	"github.com/herald-health/herald/platform/devstack"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/eventsign"
	"github.com/herald-health/herald/platform/freeport"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/identity"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/mtls"
	"github.com/herald-health/herald/platform/sealing"
	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/platform/telemetry"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	intakev1 "github.com/herald-health/herald/proto/gen/herald/intake/v1"
	"github.com/herald-health/herald/services/acknowledgement"
	"github.com/herald-health/herald/services/console"
	"github.com/herald-health/herald/services/intake"
	"github.com/herald-health/herald/services/notification"
	"github.com/herald-health/herald/services/rules"
)

// Config of the all-in-one.
type Config struct {
	// KafkaBrokers and RedisAddr select real infrastructure; empty starts
	// the embedded broker and Redis.
	KafkaBrokers config.StringList
	RedisAddr    string
	// Host is the loopback address every listener binds.
	Host string
	// AnyPorts binds every listener to a free port instead of the fixed
	// ports heraldctl falls back to without a state file (tests).
	AnyPorts bool
	// DashboardAddr serves the web page.
	DashboardAddr string
	// Speedup divides the demo policies' timeouts and clocks.
	Speedup int
	// Simulate starts the traffic simulator; Every is its pace.
	Simulate bool
	Every    time.Duration
	// Feed prints each event of the log on stdout, one line each.
	Feed bool
	// WorkDir holds the logs and the rewritten bundles.
	WorkDir string
	// LogLevel is the services' log level (their logs go to
	// WORK_DIR/services.log). cmd/herald takes it from the shell's
	// -log-level (servicemain.ShellSettings); it binds no flag of its own.
	LogLevel slog.Level
	// Telemetry is where traces go (the shell's -otlp-endpoint and
	// -otlp-tls-*): every service exports under its own name
	// ("herald-intake", ...). The zero value exports nothing.
	Telemetry telemetry.Config
	// IDP starts the development identity provider (platform/devidp: Ory
	// Hydra, built from source on first use) with the demo users; people's
	// calls (heraldctl login) are verified against it.
	IDP bool
	// PostgresURL is the console's reporting store; empty embeds one
	// (EmbedPostgres) or leaves the reporting off (see reportingStore).
	PostgresURL   string
	EmbedPostgres bool
	// Insecure serves gRPC, MLLP and FHIR in plaintext too. Without it the
	// all-in-one makes a throwaway development CA and every service
	// serves and calls with mutual TLS, as in production.
	Insecure bool
}

// DefaultConfig: embedded infrastructure, fixed loopback ports (those
// heraldctl assumes), a 60x speed-up and an alert every 4 s.
func DefaultConfig() Config {
	return Config{
		Host:          "127.0.0.1",
		DashboardAddr: "127.0.0.1:7000",
		Speedup:       60,
		Simulate:      true,
		Every:         4 * time.Second,
		Feed:          true,
		WorkDir:       filepath.Join(os.TempDir(), "herald-run"),
		IDP:           true,
		EmbedPostgres: true,
	}
}

// RegisterFlags binds the all-in-one's own settings (environment fallback
// HERALD_...). The shell's settings (log-level, otlp-*, metrics-addr,
// pprof-addr) are servicemain.Main's, as in every service binary.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Var(&c.KafkaBrokers, "kafka-brokers", "use this Kafka instead of the embedded broker")
	fs.StringVar(&c.RedisAddr, "redis-addr", c.RedisAddr, "use this Redis instead of the embedded one")
	fs.StringVar(&c.Host, "host", c.Host, "address every listener binds")
	fs.StringVar(&c.DashboardAddr, "dashboard-addr", c.DashboardAddr, "web page of alerts and captured messages")
	fs.IntVar(&c.Speedup, "speedup", c.Speedup, "divide the demo policies' timeouts and clocks by this")
	fs.BoolVar(&c.Simulate, "simulate", c.Simulate, "raise synthetic alerts and play the clinicians")
	fs.DurationVar(&c.Every, "simulate-every", c.Every, "pace of the simulated alerts")
	fs.BoolVar(&c.Feed, "feed", c.Feed, "print the event log on stdout as it grows")
	fs.StringVar(&c.WorkDir, "work-dir", c.WorkDir, "folder for the services' logs and the demo bundles")
	fs.BoolVar(&c.IDP, "idp", c.IDP, "start the development identity provider (Ory Hydra; built on first use) for heraldctl login")
	fs.StringVar(&c.PostgresURL, "postgres-url", c.PostgresURL, "the console's reporting store (default: an embedded PostgreSQL)")
	fs.BoolVar(&c.EmbedPostgres, "embed-postgres", c.EmbedPostgres, "start an embedded PostgreSQL for the reporting store when no postgres-url is given")
	fs.BoolVar(&c.Insecure, "insecure", c.Insecure, "serve gRPC, MLLP and FHIR in plaintext too (default: mutual TLS with a throwaway development CA)")
}

// Validate names the setting at fault.
func (c Config) Validate() error {
	if c.Speedup < 1 {
		return fmt.Errorf("setting speedup must be at least 1, got %d", c.Speedup)
	}
	if c.Simulate && c.Every <= 0 {
		return fmt.Errorf("setting simulate-every must be positive, got %v", c.Every)
	}
	return config.Required("work-dir", c.WorkDir)
}

// Run starts everything, prints where to look, and runs until ctx ends.
func Run(ctx context.Context, cfg Config, out io.Writer) (err error) {
	if err := cfg.Validate(); err != nil {
		return err
	}
	startedAt := time.Now()
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return fmt.Errorf("create work dir %s: %w", cfg.WorkDir, err)
	}
	logFile, err := os.Create(filepath.Join(cfg.WorkDir, "services.log"))
	if err != nil {
		return fmt.Errorf("create services log: %w", err)
	}
	defer logFile.Close()
	level := cfg.LogLevel

	brokers, redisAddr := []string(cfg.KafkaBrokers), cfg.RedisAddr
	infra := "external Kafka " + fmt.Sprint(brokers) + " and Redis " + redisAddr
	if len(brokers) == 0 || redisAddr == "" {
		stack, err := devstack.Start(devstack.Config{})
		if err != nil {
			return err
		}
		defer stack.Close()
		if len(brokers) == 0 {
			brokers = stack.KafkaBrokers
		}
		if redisAddr == "" {
			redisAddr = stack.RedisAddr
		}
		infra = fmt.Sprintf("embedded Kafka-protocol broker %v and Redis %s (in memory: gone when you stop)", brokers, redisAddr)
	}

	bundleDir := filepath.Join(cfg.WorkDir, "bundles")
	_ = os.RemoveAll(bundleDir)
	if err := writeFastBundles(rules.DemoBundles(), bundleDir, cfg.Speedup); err != nil {
		return fmt.Errorf("write demo bundles: %w", err)
	}
	// Every service serves and calls with mutual TLS, from a CA made now
	// (nothing downloaded); the tool identity is heraldctl's and the
	// simulator's. Only the embedded Kafka and Redis are plaintext: this
	// is a development system (profile development, insecure).
	tlsDir := filepath.Join(cfg.WorkDir, "tls")
	ids := map[string]mtls.Files{}
	if !cfg.Insecure {
		if ids, err = devca.WriteDir(tlsDir, time.Now(), devca.DefaultValidity, append(append([]string{}, services...), ToolIdentity, consoleIdentity)...); err != nil {
			return fmt.Errorf("make the development CA: %w", err)
		}
	}
	// Acknowledge links: a throwaway Ed25519 pair, like the CA above;
	// notification signs with the private half, acknowledgement and the
	// simulator verify with the public one.
	linkDir := filepath.Join(cfg.WorkDir, "ack-link")
	if err := os.MkdirAll(linkDir, 0o700); err != nil {
		return fmt.Errorf("make the acknowledge-link key folder: %w", err)
	}
	linkKeys, err := acklink.GenerateFiles(linkDir)
	if err != nil {
		return fmt.Errorf("make the acknowledge-link key: %w", err)
	}
	links, err := acklink.LoadVerifier(linkKeys.PublicKeyFile)
	if err != nil {
		return err
	}
	referenceKey := randomSecret()
	logCfg := eventlog.DefaultConfig()
	logCfg.Brokers = brokers
	logCfg.Partitions = 4
	// Event signing (forged events, #20 item 7): a throwaway Ed25519 key
	// per service, like the CA above; every service signs what it appends
	// and every reader verifies against the set (docs/authorization.md).
	eventKeys, err := eventsign.GenerateFiles(filepath.Join(cfg.WorkDir, "event-keys"))
	if err != nil {
		return fmt.Errorf("make the event signing keys: %w", err)
	}
	logCfg.VerifyKeysFile = eventKeys.KeySetFile
	signedBy := func(service string) eventlog.Config {
		c := logCfg
		c.SigningKeyFile = eventKeys.PrivateKeyFiles[service]
		return c
	}

	tel := func(name string) (*telemetry.Telemetry, error) {
		tc := cfg.Telemetry
		tc.ServiceName, tc.MetricsAddr = name, ""
		return telemetry.Setup(ctx, tc)
	}
	addr := func(port int) string {
		if cfg.AnyPorts {
			port = 0
		}
		return net.JoinHostPort(cfg.Host, fmt.Sprint(port))
	}
	grpcCfg := func(name string, port int, base grpcserver.Config) grpcserver.Config {
		base.Addr = addr(port)
		f := ids[name]
		base.TLSCertFile, base.TLSKeyFile, base.ClientCAFile = f.CertFile, f.KeyFile, f.CAFile
		return base
	}
	dev := servicemain.DevelopmentInsecure()

	// The development identity provider: people sign in through it
	// (heraldctl login), and the services verify their tokens.
	var idp *devidp.Provider
	if cfg.IDP {
		fmt.Fprintln(out, "starting the development identity provider (the first time builds Ory Hydra: a few minutes)")
		idpLog, err := os.Create(filepath.Join(cfg.WorkDir, "idp.log"))
		if err != nil {
			return err
		}
		defer idpLog.Close()
		if idp, err = devidp.Start(ctx, devidp.Options{Log: idpLog, Host: cfg.Host, Others: demoPerson}); err != nil {
			return fmt.Errorf("development identity provider (or run with -idp=false): %w", err)
		}
		defer idp.Close()
		for _, c := range []devidp.Client{
			{ID: ctl.DefaultClientID, RedirectURIs: []string{ctl.RedirectURI}, Audience: []string{"herald"}},
			{ID: simulatorClient, RedirectURIs: []string{simulatorRedirect}, Audience: []string{"herald"}},
		} {
			if err := idp.RegisterClient(ctx, c); err != nil {
				return err
			}
		}
	}
	issuer := ""
	if idp != nil {
		issuer = idp.Issuer
	}

	// Services, in the order events flow.
	icfg := intake.DefaultConfig()
	icfg.Security = dev
	icfg.Authn.Issuer = issuer
	icfg.Log = signedBy(eventsign.ServiceIntake)
	icfg.GRPC = grpcCfg("intake", 7001, icfg.GRPC)
	icfg.FHIRAddr, icfg.MLLPAddr = addr(8001), addr(2575)
	icfg.MLLPTLS, icfg.FHIRTLS = ids["intake"], ids["intake"]
	icfg.Redis.Addr = redisAddr
	// The demo trusts' settings list the trigger phrases the demo bundles'
	// rules look for, so those rules can fire.
	if icfg.Tenants, err = intake.DemoTenants(); err != nil {
		return fmt.Errorf("demo tenants: %w", err)
	}
	// The development senders (heraldctl and the simulator present the tool
	// certificate) are bound to the demo trusts, as a trust's RIS would be
	// to its own (docs/deployment.md, "Sender binding"). The plaintext
	// -insecure demo has no certificates, so no identities to bind.
	if !cfg.Insecure {
		var demo []string
		for _, t := range icfg.Tenants {
			demo = append(demo, t.ODS)
		}
		icfg.SenderBindings = []intake.SenderBinding{{Identity: devca.SPIFFEID(ToolIdentity), Trusts: demo}}
	}

	// Patient data at rest (docs/design.md): a throwaway key-encryption key
	// and a data key per demo trust, kept in the work folder across runs;
	// intake seals, the console opens.
	keys, err := patientKeys(ctx, filepath.Join(cfg.WorkDir, "patient-keys"), icfg.Tenants)
	if err != nil {
		return err
	}
	icfg.Keys = keys

	rcfg := rules.DefaultConfig()
	rcfg.Security = dev
	rcfg.Authn.Issuer = issuer
	rcfg.Log = signedBy(eventsign.ServiceRules)
	rcfg.GRPC = grpcCfg("rules", 7002, rcfg.GRPC)
	rcfg.BundleDir = bundleDir
	rcfg.BundlePoll = time.Second

	acfg := acknowledgement.DefaultConfig()
	acfg.Security = dev
	acfg.Authn.Issuer = issuer
	acfg.Log = signedBy(eventsign.ServiceAcknowledgement)
	acfg.GRPC = grpcCfg("acknowledgement", 7003, acfg.GRPC)
	acfg.HTTPAddr = addr(8003)
	if cfg.AnyPorts {
		// Links carry the page's address, so it must be known before start.
		if acfg.HTTPAddr, err = freeport.Addr(cfg.Host); err != nil {
			return err
		}
	}
	acfg.PublicURL = "http://" + acfg.HTTPAddr
	acfg.Redis.Addr = redisAddr
	acfg.AckLinkPublicKeys, acfg.ReferenceKey, acfg.SessionKey = linkKeys.PublicKeyFile, referenceKey, randomSecret()
	acfg.DevIdentity = "link-recipient"

	capture := notification.NewCapture(nil)
	ncfg := notification.DefaultConfig()
	ncfg.Security = dev
	ncfg.Authn.Issuer = issuer
	ncfg.Log = signedBy(eventsign.ServiceNotification)
	ncfg.GRPC = grpcCfg("notification", 7004, ncfg.GRPC)
	ncfg.ReceiptsAddr = addr(8004)
	ncfg.Redis.Addr = redisAddr
	ncfg.AckLinkKeyFile, ncfg.ReferenceKey = linkKeys.PrivateKeyFile, referenceKey
	ncfg.RetryInitial = 200 * time.Millisecond
	// The rate limit runs on the demo's clock too: per person, 10 messages in
	// 10 minutes, and the digest 2 minutes after the first message held
	// back, both divided by the speed-up (else a person in a 60x demo is over
	// the limit all the time and their digests come after their steps).
	ncfg.RateLimitWindow /= time.Duration(cfg.Speedup)
	ncfg.RateLimitDigestAfter /= time.Duration(cfg.Speedup)
	ncfg.Senders = map[eventsv1.Channel]notification.Sender{
		eventsv1.Channel_CHANNEL_EMAIL:   capture,
		eventsv1.Channel_CHANNEL_SMS:     capture,
		eventsv1.Channel_CHANNEL_TEAMS:   capture,
		eventsv1.Channel_CHANNEL_WEBHOOK: capture,
		eventsv1.Channel_CHANNEL_LOG:     capture,
	}

	// Authorization (docs/authorization.md): the development role bindings.
	// heraldctl's certificate (the simulator's and /dev/messages' too)
	// raises and reads; commands on alerts and policies need a person
	// signed in (heraldctl login, the console, the simulator's people).
	// Plaintext (-insecure) has no certificate to bind: authorization is
	// off then.
	if !cfg.Insecure {
		bindings, err := devbindings.Write(cfg.WorkDir, true)
		if err != nil {
			return err
		}
		icfg.RoleBindingsFile, rcfg.RoleBindingsFile, acfg.RoleBindingsFile, ncfg.RoleBindingsFile = bindings, bindings, bindings, bindings
	}

	// The console's reporting store (PostgreSQL), for the console to use:
	// never a reason for make run to fail.
	pgURL, pgNote, pgStop := reportingStore(cfg)
	defer pgStop()

	// Every service is acquired into one lifecycle: one that fails to
	// start releases the ones started before it, and the first that stops
	// on an error stops the rest.
	life := servicemain.NewLifecycle(logging.New(logFile, level, "allinone"))
	defer life.Rollback(&err)
	type runner interface {
		Run(ctx context.Context) error
		Stop(ctx context.Context) error
		Addrs() map[string]string
	}
	started := map[string]runner{}
	start := func(name string, mk func(deps depsArgs) (runner, error)) error {
		t, err := tel("herald-" + name)
		if err != nil {
			return err
		}
		life.OnStop(name+" telemetry", t.Shutdown)
		s, err := mk(depsArgs{logger: logging.New(logFile, level, name), tel: t})
		if err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		life.OnStop(name, s.Stop)
		life.Go(name, s.Run)
		started[name] = s
		return nil
	}
	steps := []struct {
		name string
		mk   func(d depsArgs) (runner, error)
	}{
		{"intake", func(d depsArgs) (runner, error) {
			return intake.New(ctx, icfg, intake.Deps{Logger: d.logger, Telemetry: d.tel})
		}},
		{"rules", func(d depsArgs) (runner, error) {
			return rules.New(ctx, rcfg, rules.Deps{Logger: d.logger, Telemetry: d.tel})
		}},
		{"acknowledgement", func(d depsArgs) (runner, error) {
			return acknowledgement.New(ctx, acfg, acknowledgement.Deps{Logger: d.logger, Telemetry: d.tel})
		}},
		{"notification", func(d depsArgs) (runner, error) {
			ncfg.Rules.Addr = started["rules"].Addrs()["grpc"]
			ncfg.AckBaseURL = acfg.PublicURL
			return notification.New(ctx, ncfg, notification.Deps{Logger: d.logger, Telemetry: d.tel})
		}},
	}
	for _, s := range steps {
		if err = start(s.name, s.mk); err != nil {
			return err
		}
	}
	in, rs, ak, nt := started["intake"].Addrs(), started["rules"].Addrs(), started["acknowledgement"].Addrs(), started["notification"].Addrs()

	// The simulator and the dashboard call as the tool identity.
	var tool *mtls.Source
	if f, ok := ids[ToolIdentity]; ok {
		if tool, err = mtls.Load(f, mtls.Options{}); err != nil {
			return fmt.Errorf("load the tool identity: %w", err)
		}
	}
	toolTel := telemetry.Nop("herald-allinone")
	ackConn, err := grpcserver.Dial(ctx, ak["grpc"], toolTel, grpcserver.ClientTLS(tool, ""))
	if err != nil {
		return err
	}
	life.OnClose("acknowledgement client", ackConn.Close)
	intakeConn, err := grpcserver.Dial(ctx, in["grpc"], toolTel, grpcserver.ClientTLS(tool, ""))
	if err != nil {
		return err
	}
	life.OnClose("intake client", intakeConn.Close)
	toolLog := logging.New(logFile, level, "allinone")

	// The console (services/console) is the page make run opens: people
	// sign in through the development identity provider (Hydra, the one
	// the services verify tokens against) as one of its demo people (one
	// per role and trust), and the console forwards their access tokens.
	// The captured messages stay visible to developers on a page of their
	// own (/dev/messages). Without the provider (-idp=false) nobody could
	// sign in, so there is no console.
	dash := &dashboard{ack: ackv1.NewAcknowledgementServiceClient(ackConn), capture: capture, log: toolLog}
	dashboardURL := ""
	if idp != nil {
		consoleAddr := cfg.DashboardAddr
		if cfg.AnyPorts {
			if consoleAddr, err = freeport.Addr(cfg.Host); err != nil {
				return err
			}
		}
		ccfg := console.DefaultConfig()
		// Plain HTTP pages on loopback (development); the gRPC calls are mutual
		// TLS with the console's own development certificate unless -insecure.
		ccfg.Security = dev
		ccfg.HTTPAddr, ccfg.PublicURL = consoleAddr, "http://"+consoleAddr
		ccfg.Acknowledgement.Addr, ccfg.Rules.Addr = ak["grpc"], rs["grpc"]
		ccfg.Client = ids[consoleIdentity]
		// The console is a confidential client of the provider; it asks
		// for the audience the services verify, and reads the person and
		// their roles (TRUST:role) from the ID token's Herald claims.
		ccfg.OIDCIssuer, ccfg.OIDCClientID, ccfg.OIDCClientSecret = idp.Issuer, consoleClient, randomSecret()
		ccfg.OIDCAudience, ccfg.OIDCPersonClaim, ccfg.OIDCRolesClaim = "herald", "herald_person", "herald_roles"
		if err := idp.RegisterClient(ctx, devidp.Client{ID: consoleClient, Secret: ccfg.OIDCClientSecret,
			RedirectURIs: []string{ccfg.PublicURL + "/auth/callback"}, Audience: []string{"herald"}}); err != nil {
			return err
		}
		ccfg.SessionKey = randomSecret()
		ccfg.AckLinkPublicKeys = linkKeys.PublicKeyFile
		ccfg.Keys = keys
		// The reporting store, when make run has one: the console migrates it
		// and projects the log into it (its own consumer group, the alert
		// references keyed as acknowledgement's), so the compliance and RCR
		// pages are live.
		ccfg.PostgresURL, ccfg.Log, ccfg.ReferenceKey = pgURL, logCfg, referenceKey
		var demo []console.DemoUser
		for _, u := range devidp.DemoUsers() {
			demo = append(demo, console.DemoUser{Hint: u.Subject, Label: u.Label()})
		}
		if err = start("console", func(d depsArgs) (runner, error) {
			return console.New(ctx, ccfg, console.Deps{Logger: d.logger, Telemetry: d.tel, DemoUsers: demo,
				Extra: map[string]http.Handler{"GET /dev/messages": http.HandlerFunc(dash.page)}})
		}); err != nil {
			return err
		}
		dashboardURL = "http://" + started["console"].Addrs()["http"]
	}

	scheme, tlsNote := "https", "gRPC, FHIR and MLLP use mutual TLS with a throwaway development CA in "+tlsDir+
		" (heraldctl finds its certificate through the run state); the embedded Kafka and Redis are plaintext: this is the development profile"
	if cfg.Insecure {
		scheme, tlsNote = "http", "plaintext everywhere (-insecure): development only"
	}
	statePath := filepath.Join(cfg.WorkDir, runstate.FileName)
	printBanner(out, banner{
		infra: infra, dashboard: cmp.Or(dashboardURL, "none: the console signs people in through the development identity provider (-idp=false)"), intake: in, rules: rs,
		ack: ak, notification: nt, bundles: bundleDir, logs: logFile.Name(), state: statePath,
		speedup: cfg.Speedup, simulate: cfg.Simulate, took: time.Since(startedAt), scheme: scheme, security: tlsNote,
		tool: ids[ToolIdentity], reporting: pgNote, noSignIn: idp == nil && !cfg.Insecure,
	})

	// heraldctl finds this run's broker, Redis and services through the
	// state file (the embedded ones take free ports at every start).
	tf := ids[ToolIdentity]
	if err = runstate.Write(statePath, runstate.State{
		KafkaBrokers: brokers, RedisAddr: redisAddr, IntakeGRPC: in["grpc"],
		FHIRURL: scheme + "://" + in["fhir"], MLLP: in["mllp"],
		RulesGRPC: rs["grpc"], AckGRPC: ak["grpc"],
		NotificationGRPC: nt["grpc"], Dashboard: dashboardURL, PID: os.Getpid(),
		TLSCert: tf.CertFile, TLSKey: tf.KeyFile, TLSCA: tf.CAFile, OIDCIssuer: issuer, PostgresURL: pgURL,
	}); err != nil {
		return err
	}
	life.OnClose("run state", func() error { return os.Remove(statePath) })

	if cfg.Feed {
		life.Go("feed", func(ctx context.Context) error {
			feed(ctx, logCfg, out)
			return ctx.Err()
		})
	}
	if cfg.Simulate {
		sim := &simulator{
			intake: intakev1.NewIntakeServiceClient(intakeConn), ack: ackv1.NewAcknowledgementServiceClient(ackConn),
			mllpAddr: in["mllp"], mllpTLS: tool, links: links, every: cfg.Every, log: toolLog, acted: map[string]bool{},
		}
		if idp != nil {
			sim.as = simulatedPeople(idp)
		}
		sim.noDeclines = idp == nil && !cfg.Insecure
		life.Go("simulator", func(ctx context.Context) error {
			sim.run(ctx, capture)
			return ctx.Err()
		})
	}
	return life.Run(ctx)
}

// The simulator's client at the development provider: it signs people
// in headlessly (the redirect is never served: devidp stops at it).
const (
	simulatorClient   = "herald-simulator"
	simulatorRedirect = "http://127.0.0.1:1/simulator-callback"
)

// consoleClient is the console's client at the development provider.
const consoleClient = "herald-console"

// demoPerson signs in any person of the demo trusts' directories (their
// ids start with the trust's code) as a clinician of that trust.
func demoPerson(subject string) (devidp.User, bool) {
	for _, trust := range []string{"RZZ", "RZY"} {
		if strings.HasPrefix(subject, strings.ToLower(trust)+"-") {
			return devidp.Person(subject, trust, identity.RoleClinician), true
		}
	}
	return devidp.User{}, false
}

// simulatedPeople gives each simulated person their own token.
func simulatedPeople(idp *devidp.Provider) func(string) []grpc.CallOption {
	var mu sync.Mutex
	sources := map[string]func(context.Context) (string, error){}
	return func(person string) []grpc.CallOption {
		mu.Lock()
		src, ok := sources[person]
		if !ok {
			src = idp.Source(simulatorClient, simulatorRedirect, person, "AAL3_ANY", "herald")
			sources[person] = src
		}
		mu.Unlock()
		return []grpc.CallOption{grpc.PerRPCCredentials(authn.Bearer(src))}
	}
}

// ToolIdentity is the development certificate heraldctl, the simulator and
// the dashboard present.
const ToolIdentity = "heraldctl"

// consoleIdentity is the console's development certificate (it calls
// acknowledgement and rules with it).
const consoleIdentity = "console"

// services are the all-in-one's services, in start order.
var services = []string{"intake", "rules", "acknowledgement", "notification"}

type depsArgs struct {
	logger *slog.Logger
	tel    *telemetry.Telemetry
}

func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// patientKeys makes (once) a key-encryption key and a data key for each
// trust in dir, and returns the settings naming them.
func patientKeys(ctx context.Context, dir string, tenants []intake.TenantSettings) (sealing.Files, error) {
	f := sealing.Files{KeyringFile: filepath.Join(dir, "keyring.json"), KEKFile: filepath.Join(dir, "kek")}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, fmt.Errorf("make the patient-data key folder: %w", err)
	}
	if _, err := os.Stat(f.KEKFile); errors.Is(err, os.ErrNotExist) {
		if err := sealing.GenerateKEKFile(f.KEKFile); err != nil {
			return f, err
		}
	}
	kek, err := sealing.LoadFileKEK(f.KEKFile)
	if err != nil {
		return f, err
	}
	ring, err := sealing.ReadFile(f.KeyringFile)
	if err != nil {
		return f, err
	}
	for _, t := range tenants {
		if tk := ring.Trusts[t.ODS]; tk != nil && tk.Current != "" {
			continue
		}
		if _, err := sealing.Rotate(ctx, f.KeyringFile, kek, t.ODS, time.Now()); err != nil {
			return f, fmt.Errorf("patient-data key of %s: %w", t.ODS, err)
		}
	}
	return f, nil
}
