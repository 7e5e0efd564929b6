// Package acknowledgement is Herald's acknowledgement service: it owns the
// alert lifecycle (the closed loop). It folds the alert event log into the
// lifecycle projection (mirrored in Redis, published to the compacted topic
// herald.alert-state.v1), takes the Acknowledge / Decline / RecordAction /
// MarkRead / Close commands over gRPC and by acknowledge link (HTTP), and
// runs the Redis SLA timers that escalate an unaccepted alert step by step,
// record breached clocks and finally put it in the trust's fail-safe queue.
// It also keeps the tamper-evident audit trail (package audit): every
// person's command, chained per trust on herald.audit.v1 and anchored.
//
// This package is the service's one composition root: cmd/acknowledgement,
// the all-in-one dev binary and the tests start it through Run or New.
package acknowledgement

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herald-health/herald/platform/acklink"
	"github.com/herald-health/herald/platform/alertref"
	"github.com/herald-health/herald/platform/authn"
	"github.com/herald-health/herald/platform/authz"
	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/redisbatch"
	"github.com/herald-health/herald/platform/redisconn"
	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/timers"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	"github.com/herald-health/herald/services/acknowledgement/audit"
	"github.com/herald-health/herald/services/acknowledgement/internal/adapters/ackhttp"
	"github.com/herald-health/herald/services/acknowledgement/internal/adapters/grpcapi"
	"github.com/herald-health/herald/services/acknowledgement/internal/adapters/kafkalog"
	"github.com/herald-health/herald/services/acknowledgement/internal/adapters/redisstore"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
	"github.com/herald-health/herald/services/acknowledgement/internal/auditor"
)

// ServiceName is the gRPC health name and telemetry service name.
const ServiceName = "herald-acknowledgement"

// Config is the service's configuration.
type Config struct {
	// Security is the transport policy (-profile, -insecure); the
	// development profile alone may also set DevIdentity.
	Security servicemain.Security
	// RoleBindingsFile is the role-binding file (platform/authz): who may
	// call which method for which trust.
	RoleBindingsFile string
	GRPC             grpcserver.Config
	// HTTPAddr is where the acknowledge-link pages listen.
	HTTPAddr string
	// PublicURL is the external base URL of those pages (OIDC redirect).
	PublicURL string
	Log       eventlog.Config
	// GroupID is the Kafka consumer group shared by the replicas.
	GroupID string
	// Redis holds the lifecycle projection and the SLA timers.
	Redis redisconn.Config
	// RedisNamespace prefixes every key; replicas share it.
	RedisNamespace string
	// RetainClosed is how long Redis keeps a closed or cancelled alert
	// after its last event (default 30 days; 0 keeps it for ever). Redis
	// holds open alerts; the console's reporting store keeps the history.
	RetainClosed time.Duration
	// Replica names this process in events and logs (default host-pid).
	Replica string
	// AckLinkPublicKeys is a file of PEM Ed25519 public keys, or a
	// directory of such files, that verify acknowledge links
	// (platform/acklink): the notification service signs with the private
	// key, this service never holds it. Several keys during a rotation.
	AckLinkPublicKeys string
	// ReferenceKey keys the alert references people see (>= 32 bytes, the
	// same in notification).
	ReferenceKey string
	// DevIdentity identifies every link user as this person id, with no
	// login (development only, e.g. `make run`); "link-recipient" trusts
	// the person the link was sent to. Empty in production: OIDC is used.
	DevIdentity string
	// Authn verifies the access tokens of people's gRPC calls
	// (platform/authn: -oidc-issuer, -oidc-audience, ...); its issuer is
	// also the one acknowledge-link users sign in with.
	Authn authn.Config
	// OIDC login (authorization code + PKCE) for acknowledge links.
	OIDCClientID     string
	OIDCClientSecret string
	// OIDCPersonClaim is the ID-token claim that holds Herald's person id.
	OIDCPersonClaim string
	// SessionKey seals the acknowledge page's session cookies: a secret
	// of its own (>= 32 bytes), required with OIDC sign-in in the
	// production profile; a development system without one makes a
	// random key per process.
	SessionKey string
	// SessionIdle and SessionMax bound a page session: idle time and
	// total time since sign-in.
	SessionIdle time.Duration
	SessionMax  time.Duration
	// PageACR is the assurance level a page sign-in must reach to
	// acknowledge ("" takes the level of the Acknowledge RPC).
	PageACR string

	// TimerLease is how long a claimed timer is leased to one replica.
	TimerLease time.Duration
	// TimerShards spreads timers over Redis Cluster slots.
	TimerShards int
	// TimerMaxSleep caps a poller's sleep (wake-ups make it rarely matter).
	TimerMaxSleep time.Duration
	// TimerConcurrency bounds timer handlers running at once per replica.
	TimerConcurrency int
	// ConsumerLanes is how many alerts of one partition are handled at once
	// (each alert's events stay in order).
	ConsumerLanes int
	// EpochEvery is how often a wiped Redis is looked for.
	EpochEvery time.Duration
	// CommandWait bounds how long a command waits for the projection.
	CommandWait time.Duration
	// WatchdogEvery is how often the overdue watchdog sweeps, and
	// WatchdogBound how late a deadline may be before its timer counts as
	// lost and is re-armed (docs/design.md, "Never lose an escalation").
	WatchdogEvery time.Duration
	WatchdogBound time.Duration
	// AuditAnchorEvery is how often the heads of the audit chains this
	// replica keeps are anchored (package audit, internal/auditor).
	AuditAnchorEvery time.Duration
	// AuditBundleTopic is rules' topic of policy bundle events, whose
	// proposals and approvals are audited too ("" audits none).
	AuditBundleTopic string
	// AuditOff runs without the auditor (no command or read is chained):
	// for measuring what the audit trail costs (e2e/load
	// BenchmarkAuditCost) only; the production profile refuses it.
	AuditOff bool
	// WatchesPerCaller bounds the WatchAlerts streams one caller (person,
	// else service identity) holds open at once.
	WatchesPerCaller int
}

// DefaultConfig returns loopback addresses, a local Kafka and Redis, a 5 s
// timer lease (a timer claimed by a replica that dies is fired by another
// within it: docs/performance.md, "Failover") and a 1 s epoch check.
func DefaultConfig() Config {
	return Config{
		Security:         servicemain.Security{Profile: servicemain.ProfileProduction},
		GRPC:             grpcserver.Config{Addr: "127.0.0.1:7003", ShutdownGrace: 5 * time.Second, MaxRecvBytes: MaxGRPCRequestBytes},
		HTTPAddr:         "127.0.0.1:8003",
		PublicURL:        "http://127.0.0.1:8003",
		Log:              eventlog.DefaultConfig(),
		GroupID:          "acknowledgement",
		Redis:            redisconn.Config{Addr: "127.0.0.1:6379"},
		RedisNamespace:   "herald",
		OIDCPersonClaim:  "sub",
		Authn:            authn.DefaultConfig(),
		SessionIdle:      ackhttp.DefaultSessionIdle,
		SessionMax:       ackhttp.DefaultSessionMax,
		TimerLease:       5 * time.Second,
		TimerShards:      1,
		TimerMaxSleep:    time.Second,
		TimerConcurrency: 32,
		ConsumerLanes:    8,
		EpochEvery:       time.Second,
		CommandWait:      3 * time.Second,
		RetainClosed:     30 * 24 * time.Hour,
		WatchdogEvery:    15 * time.Second,
		WatchdogBound:    time.Minute,
		AuditAnchorEvery: time.Minute,
		AuditBundleTopic: audit.TopicPolicyBundles,
		WatchesPerCaller: grpcapi.DefaultMaxWatchesPerCaller,
	}
}

// RegisterFlags binds the settings to fs (environment fallback HERALD_<FLAG>).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Security.RegisterFlags(fs)
	authz.RegisterFlag(fs, &c.RoleBindingsFile)
	c.GRPC.RegisterFlags(fs)
	c.Log.RegisterFlags(fs)
	c.Redis.RegisterFlags(fs)
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "acknowledge-link HTTP listen address")
	fs.StringVar(&c.PublicURL, "public-url", c.PublicURL, "external base URL of the acknowledge-link pages")
	fs.StringVar(&c.GroupID, "group-id", c.GroupID, "Kafka consumer group")
	fs.StringVar(&c.RedisNamespace, "redis-namespace", c.RedisNamespace, "namespace of Redis keys")
	fs.StringVar(&c.Replica, "replica", c.Replica, "name of this replica (default host-pid)")
	fs.StringVar(&c.AckLinkPublicKeys, "ack-link-public-keys-file", c.AckLinkPublicKeys, "PEM Ed25519 public keys (a file, or a directory of .pem files) that verify acknowledge links")
	config.SecretFile(fs, &c.ReferenceKey, "reference-key", "HMAC key of the alert references people see (>= 32 bytes, the same in notification)")
	fs.StringVar(&c.DevIdentity, "dev-identity", c.DevIdentity, "development only: identify link users as this person id (or link-recipient), no login")
	c.Authn.RegisterFlags(fs)
	fs.StringVar(&c.OIDCClientID, "oidc-client-id", c.OIDCClientID, "OpenID Connect client id")
	config.SecretFile(fs, &c.OIDCClientSecret, "oidc-client-secret", "OpenID Connect client secret")
	fs.StringVar(&c.OIDCPersonClaim, "oidc-person-claim", c.OIDCPersonClaim, "ID-token claim holding the person id")
	config.SecretFile(fs, &c.SessionKey, "session-key", "key sealing the acknowledge page's session cookies (>= 32 bytes; its own secret)")
	fs.DurationVar(&c.SessionIdle, "session-idle", c.SessionIdle, "an acknowledge-page session not used for this long ends")
	fs.DurationVar(&c.SessionMax, "session-max", c.SessionMax, "an acknowledge-page session ends this long after sign-in")
	fs.StringVar(&c.PageACR, "page-acr", c.PageACR, "assurance level an acknowledge-page sign-in needs (empty: the Acknowledge RPC's)")
	fs.DurationVar(&c.TimerLease, "timer-lease", c.TimerLease, "lease of a claimed timer")
	fs.IntVar(&c.TimerShards, "timer-shards", c.TimerShards, "timer shards (Redis Cluster slots)")
	fs.DurationVar(&c.TimerMaxSleep, "timer-max-sleep", c.TimerMaxSleep, "longest timer poller sleep")
	fs.IntVar(&c.TimerConcurrency, "timer-concurrency", c.TimerConcurrency, "timer handlers at once per replica")
	fs.IntVar(&c.ConsumerLanes, "consumer-lanes", c.ConsumerLanes, "alerts of one partition handled at once (each alert's events stay in order)")
	fs.DurationVar(&c.EpochEvery, "epoch-every", c.EpochEvery, "how often to check Redis for a wipe")
	fs.DurationVar(&c.CommandWait, "command-wait", c.CommandWait, "how long a command waits for the projection")
	fs.DurationVar(&c.WatchdogEvery, "watchdog-every", c.WatchdogEvery, "how often the overdue watchdog looks for alerts whose SLA timer was lost")
	fs.StringVar(&c.AuditBundleTopic, "audit-bundle-topic", c.AuditBundleTopic, "rules' topic of policy bundle events, audited once it exists (empty: none)")
	fs.BoolVar(&c.AuditOff, "audit-off", c.AuditOff, "run without the audit trail: for measuring its cost only (refused in the production profile)")
	fs.DurationVar(&c.AuditAnchorEvery, "audit-anchor-every", c.AuditAnchorEvery, "how often the heads of the audit chains are anchored on herald.audit-anchors.v1")
	fs.IntVar(&c.WatchesPerCaller, "watch-streams-per-caller", c.WatchesPerCaller, "WatchAlerts streams one caller (person, else service) may hold open at once")
	fs.DurationVar(&c.WatchdogBound, "watchdog-bound", c.WatchdogBound, "how far past its deadline an alert's timer counts as lost and is re-armed")
	fs.DurationVar(&c.RetainClosed, "retain-closed", c.RetainClosed, "how long Redis keeps a closed or cancelled alert after its last event (0: for ever)")
}

// Validate names the setting at fault.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	for _, err := range []error{c.GRPC.Validate(), c.Log.Validate(), c.Redis.Validate(), c.Security.Check(c.GRPC, c.Log, c.Log.Signing(), c.Redis)} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for name, v := range map[string]string{"http-addr": c.HTTPAddr, "public-url": c.PublicURL, "group-id": c.GroupID,
		"redis-namespace": c.RedisNamespace} {
		if v == "" {
			bad("setting %s is required", name)
		}
	}
	if strings.ContainsAny(c.RedisNamespace, "{}: ") {
		bad("setting redis-namespace must not contain braces, colons or spaces")
	}
	if c.AckLinkPublicKeys == "" {
		bad("setting ack-link-public-keys-file is required (the Ed25519 public keys that verify acknowledge links)")
	}
	if c.AuditOff && !c.Security.Development() {
		bad("setting audit-off is refused in the production profile: every command and read of patient data is chained in the audit trail")
	}
	if c.DevIdentity != "" && !c.Security.Development() {
		bad("setting dev-identity is refused in the production profile: link users log in with OIDC (setting oidc-issuer)")
	}
	if len(c.ReferenceKey) < alertref.MinKeyLen {
		bad("setting reference-key must be at least %d bytes", alertref.MinKeyLen)
	}
	if err := c.Authn.Validate(!c.Security.Development()); err != nil {
		errs = append(errs, err)
	}
	if c.DevIdentity == "" && c.Authn.Issuer == "" {
		bad("setting oidc-issuer is required (or dev-identity in development)")
	}
	if c.DevIdentity == "" && !c.Security.Development() && len(c.SessionKey) < ackhttp.MinSessionKeyLen {
		bad("setting session-key-file is required (a secret of at least %d bytes, not the link secret)", ackhttp.MinSessionKeyLen)
	}
	if c.SessionKey != "" && len(c.SessionKey) < ackhttp.MinSessionKeyLen {
		bad("setting session-key-file must hold at least %d bytes", ackhttp.MinSessionKeyLen)
	}
	if c.SessionIdle <= 0 || c.SessionMax < c.SessionIdle {
		bad("settings session-idle and session-max must be positive, session-max at least session-idle")
	}
	if c.PageACR != "" && !slices.Contains(c.Authn.ACRLevels, c.PageACR) {
		bad("setting page-acr %q is not in oidc-acr-levels %v", c.PageACR, c.Authn.ACRLevels)
	}
	if c.DevIdentity == "" && c.Authn.Issuer != "" && (c.OIDCClientID == "" || c.OIDCPersonClaim == "") {
		bad("settings oidc-client-id and oidc-person-claim are required with oidc-issuer")
	}
	if c.WatchesPerCaller < 1 {
		bad("setting watch-streams-per-caller must be at least 1")
	}
	if c.TimerLease < time.Second {
		bad("setting timer-lease must be at least 1s")
	}
	if c.TimerShards < 1 || c.TimerShards > timers.MaxShards {
		bad("setting timer-shards must be between 1 and %d", timers.MaxShards)
	}
	if c.TimerMaxSleep < time.Millisecond {
		bad("setting timer-max-sleep must be at least 1ms")
	}
	if c.TimerConcurrency < 1 {
		bad("setting timer-concurrency must be at least 1")
	}
	if c.ConsumerLanes < 1 {
		bad("setting consumer-lanes must be at least 1")
	}
	if c.EpochEvery <= 0 {
		bad("setting epoch-every must be positive")
	}
	if c.CommandWait <= 0 {
		bad("setting command-wait must be positive")
	}
	if c.WatchdogEvery <= 0 {
		bad("setting watchdog-every must be positive")
	}
	if c.WatchdogBound <= 0 {
		bad("setting watchdog-bound must be positive")
	}
	if c.AuditAnchorEvery <= 0 {
		bad("setting audit-anchor-every must be positive")
	}
	return errors.Join(errs...)
}

// MaxGRPCRequestBytes bounds one gRPC request to acknowledgement: commands
// carry ids and short notes.
const MaxGRPCRequestBytes = 256 << 10

// Deps are the service's injected dependencies; zero values get defaults.
type Deps struct {
	Logger    *slog.Logger
	Clock     clock.Clock
	Telemetry *telemetry.Telemetry
	// Hooks are test points of the application (not for production).
	Hooks app.Hooks

	// Authentication is the server option that verifies who calls and
	// puts the identity.Caller in the context, installed before
	// authorization (nil: platform/authn's token verification, binding people through
	// the role-binding file when one is configured, else through the
	// token's claims; tests inject platform/authz/authztest).
	Authentication grpcserver.Option
}

// Service is a started acknowledgement service.
type Service struct {
	life *servicemain.Lifecycle
	cfg  Config
	log  *slog.Logger
	grpc *grpcserver.Server
	// roles are the role bindings in force (nil: none), the RoleBinder
	// of authentication (issue #20).
	roles *authz.Source
	http  *servicemain.HTTPServer
}

// New validates cfg, connects to Redis, ensures the topics and binds the
// gRPC and HTTP listeners, registering each release as it goes: a New that
// fails releases what it had acquired.
func New(ctx context.Context, cfg Config, deps Deps) (s *Service, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	deps.Logger, deps.Clock, deps.Telemetry = servicemain.Defaults(ServiceName, deps.Logger, deps.Clock, deps.Telemetry)
	cfg.Log = cfg.Log.Observed(deps.Logger, deps.Telemetry) // refused records are logged and counted wherever they are read
	if cfg.Replica == "" {
		host, _ := os.Hostname()
		cfg.Replica = host + "-" + strconv.Itoa(os.Getpid())
	}
	log := deps.Logger
	s = &Service{life: servicemain.NewLifecycle(log), cfg: cfg, log: log}
	defer s.life.Rollback(&err)
	rdb, err := redisconn.NewClient(cfg.Redis, nil)
	if err != nil {
		return nil, err
	}
	s.life.OnClose("redis", rdb.Close)
	if err := rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("connect to redis (setting redis-addr): %w", err)
	}
	if err := eventlog.EnsureTopics(ctx, cfg.Log, log); err != nil {
		return nil, fmt.Errorf("ensure topics: %w", err)
	}
	writer := eventlog.NewWriter(cfg.Log, "acknowledgement/"+cfg.Replica, deps.Telemetry)
	s.life.OnClose("event writer", writer.Close)
	// The lanes' script calls (read and store a state, arm or cancel its
	// timer) share round trips: at 1,000 alerts/s that took 5-10% off
	// acknowledgement's and Redis's CPU (docs/performance.md, round 6).
	scripts := redisbatch.New(rdb)
	s.life.OnClose("redis batcher", func() error { scripts.Close(); return nil })
	store := redisstore.New(rdb, cfg.RedisNamespace).ScriptsVia(scripts).RetainClosed(cfg.RetainClosed, deps.Clock.Now)
	tcfg := timers.DefaultConfig()
	tcfg.Namespace = cfg.RedisNamespace
	tcfg.Shards = cfg.TimerShards
	tcfg.Lease = cfg.TimerLease
	tcfg.WakeWithin = cfg.TimerMaxSleep
	tstore, err := timers.New(rdb, deps.Clock, tcfg)
	if err != nil {
		return nil, fmt.Errorf("timer store: %w", err)
	}
	tstore.ScriptsVia(scripts)
	hub := app.NewHub()
	// Decisions read the alert's events the group has not committed past
	// (docs/design.md, "Deciding on fresh state").
	tail := kafkalog.NewTail(cfg.Log, cfg.GroupID)
	s.life.OnClose("event tail", func() error { tail.Close(); return nil })
	events := kafkalog.NewEvents(cfg.Log)
	s.life.OnClose("event reader", func() error { events.Close(); return nil })
	a := app.New(app.Deps{
		States: store, Recovery: store, Log: writer, Topic: kafkalog.NewStateTopic(cfg.Log, writer),
		Timers: tstore, Lister: store, Tail: tail, Clock: deps.Clock, Logger: log,
		Tel: deps.Telemetry, Hooks: deps.Hooks, Producer: "acknowledgement/" + cfg.Replica, CommandWait: cfg.CommandWait,
		Events: events, Views: kafkalog.NewViews(writer, audit.TopicsFor(cfg.Log.EventsTopic).Intake),
	})
	poller, err := timers.NewPoller(tstore, timers.PollerConfig{
		Concurrency: cfg.TimerConcurrency, MaxSleep: cfg.TimerMaxSleep, EpochEvery: cfg.EpochEvery,
		RetryMin: 50 * time.Millisecond, RetryMax: 5 * time.Second, Logger: log,
		OnEpochLost: func(ctx context.Context) error { return a.Recover(ctx, cfg.Replica) },
	})
	if err != nil {
		return nil, fmt.Errorf("timer poller: %w", err)
	}
	cfg.GRPC.Reflection = cfg.Security.Development()
	// Authorization (platform/authz): the method table and the role
	// bindings, after authentication. The bindings are the RoleBinder
	// authentication uses.
	grpcOpts, roles, err := authz.Configure(cfg.RoleBindingsFile, cfg.Security.Development(), log,
		authn.ForService(ctx, deps.Authentication, cfg.Authn, cfg.Security.Development(), cfg.GRPC.ClientCAFile != "", log))
	if err != nil {
		return nil, err
	}
	s.roles = roles
	if s.grpc, err = grpcserver.New(cfg.GRPC, log, deps.Telemetry, grpcOpts...); err != nil {
		return nil, err
	}
	s.life.OnStop("grpc server", s.grpc.Close)
	s.life.Go("grpc server", s.grpc.Serve)
	refs, err := alertref.New([]byte(cfg.ReferenceKey))
	if err != nil {
		return nil, fmt.Errorf("setting reference-key: %w", err)
	}
	verifier, err := acklink.LoadVerifier(cfg.AckLinkPublicKeys)
	if err != nil {
		return nil, fmt.Errorf("setting ack-link-public-keys-file: %w", err)
	}
	log.Info("acknowledge links verified", "kids", verifier.KeyIDs())
	ackv1.RegisterAcknowledgementServiceServer(s.grpc.GRPC(), grpcapi.New(a, hub, refs).LimitWatches(cfg.WatchesPerCaller).
		WithAuditExport(func(ctx context.Context, alertID string) (*audit.Export, error) {
			t := audit.TopicsFor(cfg.Log.EventsTopic)
			return audit.ExportAlert(ctx, cfg.Log, t.Records, t.Anchors, alertID)
		}))
	sessionKey := []byte(cfg.SessionKey)
	if len(sessionKey) == 0 {
		// Development only (Validate): sessions end when the process does.
		sessionKey = make([]byte, ackhttp.MinSessionKeyLen)
		_, _ = rand.Read(sessionKey)
	}
	pageACR := cfg.PageACR
	if pageACR == "" {
		pageACR = cmp.Or(cfg.Authn.MethodACR[ackv1.AcknowledgementService_Acknowledge_FullMethodName], cfg.Authn.MinACR)
	}
	links, err := ackhttp.New(ctx, ackhttp.Config{
		SessionKey: sessionKey, SessionIdle: cfg.SessionIdle, SessionMax: cfg.SessionMax,
		MinACR: pageACR, ACRLevels: cfg.Authn.ACRLevels,
		Links: verifier, References: refs, PublicURL: cfg.PublicURL, DevIdentity: cfg.DevIdentity,
		OIDCIssuer: cfg.Authn.Issuer, OIDCClientID: cfg.OIDCClientID, OIDCClientSecret: cfg.OIDCClientSecret,
		OIDCPersonClaim: cfg.OIDCPersonClaim,
	}, a, store, deps.Clock, log)
	if err != nil {
		return nil, err
	}
	if s.http, err = servicemain.ListenHTTP(cfg.HTTPAddr, links, nil, servicemain.DefaultHTTPLimits()); err != nil {
		return nil, fmt.Errorf("acknowledge pages (setting http-addr): %w", err)
	}
	s.life.OnStop("http server", s.http.Close)
	s.life.Go("http server", s.http.Serve)
	s.life.Go("recovery", func(ctx context.Context) error { return a.RunRecovery(ctx, cfg.Replica, cfg.EpochEvery) })
	s.life.Go("changes", func(ctx context.Context) error { return hub.Feed(ctx, store.Subscribe, time.Second, log) })
	s.life.Go("timers", func(ctx context.Context) error { return poller.Run(ctx, a.FireTimer) })
	s.life.Go("watchdog", func(ctx context.Context) error {
		return a.RunWatchdog(ctx, store, app.WatchdogConfig{Every: cfg.WatchdogEvery, Bound: cfg.WatchdogBound})
	})
	// The audit trail (docs/design.md, "The audit trail"): its own two
	// consumer groups, chaining commands and reads per trust.
	if cfg.AuditOff {
		log.Warn("the audit trail is off (setting audit-off, for measurements only): no command or read is chained")
	} else {
		aud, err := auditor.New(ctx, auditor.Config{Log: cfg.Log, Topics: audit.TopicsFor(cfg.Log.EventsTopic), Group: cfg.GroupID,
			Producer: "acknowledgement/" + cfg.Replica, AnchorEvery: cfg.AuditAnchorEvery, BundleTopic: cfg.AuditBundleTopic, Logger: log,
			Telemetry: deps.Telemetry, Clock: deps.Clock}, writer)
		if err != nil {
			return nil, err
		}
		s.life.OnClose("auditor", func() error { aud.Close(); return nil })
		s.life.Go("auditor", aud.Run)
	}
	s.life.Go("event consumer", func(ctx context.Context) error {
		return eventlog.Consume(ctx, eventlog.ConsumerConfig{Config: cfg.Log, GroupID: cfg.GroupID,
			Logger: log, Telemetry: deps.Telemetry, MaxBackoff: time.Second, Lanes: cfg.ConsumerLanes}, kafkalog.Handler(a))
	})
	return s, nil
}

// Addrs returns the bound addresses: "grpc" and "http".
func (s *Service) Addrs() map[string]string {
	return map[string]string{"grpc": s.grpc.Addr(), "http": s.http.Addr()}
}

// Run consumes the event log, fires timers, watches for a wiped Redis and
// serves gRPC and HTTP until ctx is done or one of them fails, then stops
// the others and releases everything in reverse order of acquisition.
func (s *Service) Run(ctx context.Context) error {
	s.grpc.SetServing(ackv1.AcknowledgementService_ServiceDesc.ServiceName)
	s.log.InfoContext(ctx, "acknowledgement service started", slog.String("grpc", s.grpc.Addr()),
		slog.String("http", s.http.Addr()), slog.String("replica", s.cfg.Replica))
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

// Stop releases what New acquired, for a composer that built the service
// but will not run it (Run releases everything itself).
func (s *Service) Stop(ctx context.Context) error { return s.life.Stop(ctx) }
