// Package notification is Herald's notification service: it turns routed,
// escalated and fail-safe-queued alerts into messages on channels (email,
// SMS, Teams, webhooks), with dedup by deterministic notification id,
// per-recipient rate limits, bounded retries, fallback to the next contact
// point and delivery receipts, and records the outcomes as events. A
// message in doubt (its replica died mid-send) is sent again with the same
// idempotency keys, a bounded number of times: a possible duplicate over a
// possible silent loss (README, "Crash windows").
//
// This package is the service's one composition root: cmd/notification,
// the all-in-one dev binary and the tests start it through Run or New.
package notification

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/acklink"
	"github.com/herald-health/herald/platform/alertref"
	"github.com/herald-health/herald/platform/authn"
	"github.com/herald-health/herald/platform/authz"
	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/mtls"
	"github.com/herald-health/herald/platform/redisbatch"
	"github.com/herald-health/herald/platform/redisconn"
	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/platform/telemetry"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	notificationv1 "github.com/herald-health/herald/proto/gen/herald/notification/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
	"github.com/herald-health/herald/services/notification/internal/adapters/kafkatail"
	"github.com/herald-health/herald/services/notification/internal/adapters/redisstore"
	"github.com/herald-health/herald/services/notification/internal/adapters/rulesclient"
	"github.com/herald-health/herald/services/notification/internal/app"
	"github.com/herald-health/herald/services/notification/internal/channel"
	"github.com/herald-health/herald/services/notification/internal/content"
	"github.com/herald-health/herald/services/notification/internal/domain"
)

// Sender delivers messages over one channel; see its contract (what an
// error means) in the method's documentation. A composer may register
// extra or replacement channels in Config.Senders.
type Sender = channel.Sender

// Message is one message to one address.
type Message = channel.Message

// SenderFunc adapts a function to Sender.
type SenderFunc = channel.SenderFunc

// Capture is an in-memory channel that keeps every message (tests, `make run`).
type Capture = channel.Capture

// Permanent marks a Sender error as permanent (move to the next contact point).
func Permanent(err error) error { return channel.Permanent(err) }

// NewCapture returns an in-memory capture channel passing on to next (nil for none).
func NewCapture(next Sender) *Capture { return channel.NewCapture(next) }

// NewLogSender returns the development log channel (logs ids only).
func NewLogSender(logger *slog.Logger) Sender { return channel.NewLog(logger) }

// CaptureAll routes every channel (email, SMS, Teams, webhook, log) to one
// in-memory capture that passes each message on to next (nil: keep it
// only; NewLogSender(logger): also log its ids), and returns the capture.
// It is for `make run` and tests: captured messages hold addresses.
func (c *Config) CaptureAll(next Sender) *Capture {
	capture := channel.NewCapture(next)
	if c.Senders == nil {
		c.Senders = map[eventsv1.Channel]Sender{}
	}
	for _, ch := range []eventsv1.Channel{eventsv1.Channel_CHANNEL_EMAIL, eventsv1.Channel_CHANNEL_SMS,
		eventsv1.Channel_CHANNEL_TEAMS, eventsv1.Channel_CHANNEL_WEBHOOK, eventsv1.Channel_CHANNEL_LOG} {
		c.Senders[ch] = capture
	}
	return capture
}

// ServiceName is the gRPC health name and telemetry service name.
const ServiceName = "herald-notification"

// Config is the service's configuration.
type Config struct {
	// Security is the transport policy (-profile, -insecure).
	Security servicemain.Security
	// RoleBindingsFile is the role-binding file (platform/authz): who may
	// call which method for which trust.
	RoleBindingsFile string
	GRPC             grpcserver.Config
	// Authn verifies the access tokens of people's gRPC calls
	// (platform/authn: -oidc-issuer, -oidc-audience, ...).
	Authn authn.Config
	// ReceiptsAddr is where the delivery-receipt HTTP endpoint listens.
	ReceiptsAddr string
	// ReceiptsSecret signs providers' delivery reports (HMAC-SHA256).
	ReceiptsSecret string
	// NotifyCallbackToken is the bearer token GOV.UK Notify sends with its
	// delivery-status callbacks (POST /v1/receipts/notify); read from a file.
	NotifyCallbackToken string
	Log                 eventlog.Config
	// GroupID is the Kafka consumer group.
	GroupID string
	// Redis holds the notification projection and the job queues.
	Redis redisconn.Config
	// RedisPrefix starts every key; replicas share it.
	RedisPrefix string
	// Rules is where the rules service is called (ResolveTargets), with
	// the service's own certificate (mutual TLS, GRPC's files).
	Rules      grpcserver.ClientConfig
	AckBaseURL string
	// AckLinkKeyFile is the Ed25519 private key (PEM, PKCS #8) that signs
	// acknowledge links (platform/acklink); the acknowledgement service
	// holds only its public key.
	AckLinkKeyFile string
	// A link lives until the alert's acknowledge-by clock (communicate-by
	// when the category has none), but at least AckLinkMinTTL from sending
	// (a reminder sent after the deadline still works) and at most
	// AckLinkTTL.
	AckLinkTTL    time.Duration
	AckLinkMinTTL time.Duration
	// ReferenceKey keys the alert references people see (>= 32 bytes,
	// the same in acknowledgement).
	ReferenceKey string

	SMTPAddr     string
	SMTPUser     string
	SMTPPassword string
	SMTPFrom     string
	SMTPStartTLS bool
	// SMTPCAFile verifies the SMTP server's certificate (PEM); system roots when empty.
	SMTPCAFile string

	NotifyBaseURL    string
	NotifyAPIKey     string
	NotifyTemplateID string

	WebhookSecret string
	// TemplatesDir overrides templates per trust: <dir>/<TENANT>/<channel>/<name>.tmpl.
	TemplatesDir string
	// LogOnly sends every channel to the log channel (development).
	LogOnly bool

	RetryInitial    time.Duration
	RetryMax        time.Duration
	RetryAttempts   int
	RateLimitMax    int
	RateLimitWindow time.Duration
	// RateLimitDigestAfter is how long a person over the rate limit waits
	// for the one digest message that lists what was held back; keep it
	// well under the shortest step timeout of a non-CRITICAL policy.
	RateLimitDigestAfter time.Duration
	Workers              int
	// ScheduleWorkers of the Workers are kept for scheduled jobs (retries,
	// rate-limited sends, overflow), so that under sustained overload they
	// do not wait behind newly routed alerts.
	ScheduleWorkers int
	// Lease is how long a job stays leased to a replica without renewal;
	// a live replica renews its jobs' leases every Lease/3, so a dead
	// replica's jobs move to another within Lease.
	Lease       time.Duration
	SendTimeout time.Duration
	// InDoubtResends caps how many times a message in doubt (its replica
	// died between claiming the send and recording the provider's answer)
	// is sent again with the same idempotency keys before it fails on its
	// contact point (the next one is tried; then the step fails and
	// escalates). Zero: never resent, failed at once.
	InDoubtResends int
	// FreshWait bounds how long a send decision retries reading the
	// alert's events from the log (Kafka unreachable, or the group too far
	// behind to read the gap); after it, the send is decided on the
	// projection as it is, with a warning.
	FreshWait time.Duration
	// RebuildLease is how long the lock of a replica rebuilding the
	// projection from the log lasts without renewal: the lock of one that
	// died mid-rebuild ends within it and another rebuilds.
	RebuildLease time.Duration
	MaxIdle      time.Duration
	// ConsumerLanes is how many alerts of one partition are handled at
	// once (each alert's events stay in order).
	ConsumerLanes int

	// Senders registers extra channels or replaces built-in ones (not a
	// flag: set by a composer, e.g. a Capture for `make run` or tests).
	Senders map[eventsv1.Channel]Sender
	// SMTPTLS replaces the STARTTLS client configuration (not a flag).
	SMTPTLS *tls.Config
}

// DefaultConfig returns the defaults: loopback addresses, a local Kafka and
// Redis, retries 1s..1m x5, at most 10 messages a person per 10 minutes
// (never delaying CRITICAL).
func DefaultConfig() Config {
	return Config{
		Security:             servicemain.Security{Profile: servicemain.ProfileProduction},
		GRPC:                 grpcserver.Config{Addr: "127.0.0.1:7004", ShutdownGrace: 5 * time.Second, MaxRecvBytes: MaxGRPCRequestBytes},
		Authn:                authn.DefaultConfig(),
		ReceiptsAddr:         "127.0.0.1:8004",
		Log:                  eventlog.DefaultConfig(),
		GroupID:              "notification",
		Redis:                redisconn.Config{Addr: "127.0.0.1:6379"},
		RedisPrefix:          "herald:notification",
		Rules:                grpcserver.ClientConfig{Addr: "127.0.0.1:7002"},
		AckBaseURL:           "http://127.0.0.1:8003",
		AckLinkTTL:           72 * time.Hour,
		AckLinkMinTTL:        time.Hour,
		SMTPFrom:             "herald@herald.invalid",
		SMTPStartTLS:         true,
		RetryInitial:         time.Second,
		RetryMax:             time.Minute,
		RetryAttempts:        5,
		RateLimitMax:         10,
		RateLimitWindow:      10 * time.Minute,
		RateLimitDigestAfter: 2 * time.Minute,
		Workers:              32,
		ScheduleWorkers:      4,
		ConsumerLanes:        8,
		Lease:                5 * time.Second,
		SendTimeout:          15 * time.Second,
		InDoubtResends:       2,
		FreshWait:            15 * time.Second,
		RebuildLease:         6 * time.Second,
		MaxIdle:              time.Second,
	}
}

// RegisterFlags binds the settings to fs (environment fallback HERALD_<FLAG>).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Security.RegisterFlags(fs)
	authz.RegisterFlag(fs, &c.RoleBindingsFile)
	c.GRPC.RegisterFlags(fs)
	c.Authn.RegisterFlags(fs)
	c.Log.RegisterFlags(fs)
	c.Redis.RegisterFlags(fs)
	c.Rules.RegisterFlags(fs, "rules")
	fs.StringVar(&c.ReceiptsAddr, "receipts-addr", c.ReceiptsAddr, "delivery receipts HTTP listen address")
	config.SecretFile(fs, &c.ReceiptsSecret, "receipts-secret", "HMAC secret of providers' delivery reports")
	config.SecretFile(fs, &c.NotifyCallbackToken, "notify-callback-token", "bearer token of GOV.UK Notify's delivery-status callbacks (POST /v1/receipts/notify)")
	fs.StringVar(&c.GroupID, "group-id", c.GroupID, "Kafka consumer group")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", c.RedisPrefix, "prefix of Redis keys")
	fs.StringVar(&c.AckBaseURL, "ack-base-url", c.AckBaseURL, "base URL of acknowledge links (<url>/ack/<token>)")
	fs.StringVar(&c.AckLinkKeyFile, "ack-link-key-file", c.AckLinkKeyFile, "Ed25519 private key (PEM, PKCS #8) that signs acknowledge links")
	fs.DurationVar(&c.AckLinkTTL, "ack-link-ttl", c.AckLinkTTL, "longest lifetime of an acknowledge link (links live until the alert's acknowledge-by clock)")
	fs.DurationVar(&c.AckLinkMinTTL, "ack-link-min-ttl", c.AckLinkMinTTL, "shortest lifetime of an acknowledge link (one sent after the acknowledge-by clock)")
	config.SecretFile(fs, &c.ReferenceKey, "reference-key", "HMAC key of the alert references people see (>= 32 bytes, the same in acknowledgement)")
	fs.StringVar(&c.SMTPAddr, "smtp-addr", c.SMTPAddr, "SMTP submission server host:port (email disabled when empty)")
	fs.StringVar(&c.SMTPUser, "smtp-user", c.SMTPUser, "SMTP AUTH user")
	config.SecretFile(fs, &c.SMTPPassword, "smtp-password", "SMTP AUTH password")
	fs.StringVar(&c.SMTPFrom, "smtp-from", c.SMTPFrom, "envelope and header sender")
	fs.BoolVar(&c.SMTPStartTLS, "smtp-starttls", c.SMTPStartTLS, "require STARTTLS")
	fs.StringVar(&c.SMTPCAFile, "smtp-ca-file", c.SMTPCAFile, "CA (PEM) verifying the SMTP server")
	fs.StringVar(&c.NotifyBaseURL, "notify-base-url", c.NotifyBaseURL, "SMS gateway base URL (Notify-shaped; SMS disabled when empty)")
	config.SecretFile(fs, &c.NotifyAPIKey, "notify-api-key", "SMS gateway bearer key")
	fs.StringVar(&c.NotifyTemplateID, "notify-template-id", c.NotifyTemplateID, "SMS gateway template id")
	config.SecretFile(fs, &c.WebhookSecret, "webhook-secret", "HMAC secret of outgoing webhooks (webhook channel disabled when not set)")
	fs.StringVar(&c.TemplatesDir, "templates-dir", c.TemplatesDir, "per-trust template overrides directory")
	fs.BoolVar(&c.LogOnly, "log-only", c.LogOnly, "send every channel to the log channel (development)")
	fs.DurationVar(&c.RetryInitial, "retry-initial", c.RetryInitial, "first retry wait")
	fs.DurationVar(&c.RetryMax, "retry-max", c.RetryMax, "longest retry wait")
	fs.IntVar(&c.RetryAttempts, "retry-attempts", c.RetryAttempts, "attempts per contact point")
	fs.IntVar(&c.RateLimitMax, "rate-limit-max", c.RateLimitMax, "messages per person per window (0 disables; CRITICAL never delayed)")
	fs.DurationVar(&c.RateLimitWindow, "rate-limit-window", c.RateLimitWindow, "rate limit window")
	fs.DurationVar(&c.RateLimitDigestAfter, "rate-limit-digest-after", c.RateLimitDigestAfter, "a person over the rate limit gets one digest message this long after the first message held back (keep it well under the shortest step timeout)")
	fs.IntVar(&c.Workers, "workers", c.Workers, "concurrent jobs")
	fs.IntVar(&c.ScheduleWorkers, "schedule-workers", c.ScheduleWorkers, "workers kept for scheduled jobs (retries, rate-limited sends, overflow) so they never wait behind new alerts; at most workers-1")
	fs.IntVar(&c.ConsumerLanes, "consumer-lanes", c.ConsumerLanes, "alerts of one partition handled at once (each alert's events stay in order)")
	fs.DurationVar(&c.Lease, "lease", c.Lease, "job lease, renewed every lease/3 while the job is worked: a dead replica's jobs move within it")
	fs.DurationVar(&c.RebuildLease, "rebuild-lease", c.RebuildLease, "how long the rebuild lock lasts without renewal (a replica that dies mid-rebuild holds it up to this long)")
	fs.DurationVar(&c.FreshWait, "fresh-wait", c.FreshWait, "longest a send decision retries reading the alert's events from the log before it decides on the projection as it is")
	fs.DurationVar(&c.SendTimeout, "send-timeout", c.SendTimeout, "bound of one provider call")
	fs.IntVar(&c.InDoubtResends, "in-doubt-resends", c.InDoubtResends, "times a message whose send's outcome is unknown (its replica died mid-send) is sent again with the same idempotency keys before it fails on that contact point (0: fails at once)")
}

// Validate names the setting at fault.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	for _, err := range []error{c.GRPC.Validate(), c.Authn.Validate(!c.Security.Development()), c.Log.Validate(), c.Redis.Validate(), c.Rules.Validate("rules"),
		c.Security.Check(c.GRPC, c.Log, c.Log.Signing(), c.Redis)} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for name, v := range map[string]string{"receipts-addr": c.ReceiptsAddr, "group-id": c.GroupID,
		"redis-prefix": c.RedisPrefix, "ack-base-url": c.AckBaseURL} {
		if v == "" {
			bad("setting %s is required", name)
		}
	}
	if c.AckLinkKeyFile == "" {
		bad("setting ack-link-key-file is required (the Ed25519 key that signs acknowledge links)")
	}
	if c.AckLinkMinTTL <= 0 || c.AckLinkTTL < c.AckLinkMinTTL {
		bad("settings ack-link-min-ttl and ack-link-ttl must be positive, ack-link-ttl at least ack-link-min-ttl")
	}
	if len(c.ReferenceKey) < alertref.MinKeyLen {
		bad("setting reference-key must be at least %d bytes", alertref.MinKeyLen)
	}
	if c.ReceiptsSecret != "" && len(c.ReceiptsSecret) < 16 {
		bad("setting receipts-secret must be at least 16 bytes")
	}
	if c.NotifyCallbackToken != "" && len(c.NotifyCallbackToken) < 16 {
		bad("setting notify-callback-token-file must hold at least 16 bytes")
	}
	if c.SMTPUser != "" && !c.SMTPStartTLS {
		bad("setting smtp-user needs smtp-starttls: credentials are never sent in clear")
	}
	if c.NotifyBaseURL != "" && c.NotifyAPIKey == "" {
		bad("setting notify-api-key is required with notify-base-url")
	}
	if c.RetryInitial <= 0 || c.RetryMax < c.RetryInitial {
		bad("settings retry-initial must be > 0 and retry-max >= retry-initial")
	}
	if c.RetryAttempts < 1 {
		bad("setting retry-attempts must be at least 1")
	}
	if c.RateLimitMax < 0 || (c.RateLimitMax > 0 && c.RateLimitWindow <= 0) {
		bad("settings rate-limit-max must be >= 0 and rate-limit-window > 0")
	}
	if c.RateLimitMax > 0 && c.RateLimitDigestAfter <= 0 {
		bad("setting rate-limit-digest-after must be > 0 when rate-limit-max is set")
	}
	if c.Workers < 1 {
		bad("setting workers must be at least 1")
	}
	if c.ScheduleWorkers < 1 {
		bad("setting schedule-workers must be at least 1 (with one worker, it serves both)")
	}
	if c.Workers > 1 && c.ScheduleWorkers >= c.Workers {
		bad("setting schedule-workers must be less than workers")
	}
	if c.ConsumerLanes < 1 {
		bad("setting consumer-lanes must be at least 1")
	}
	if c.SendTimeout <= 0 {
		bad("setting send-timeout must be > 0")
	}
	if c.InDoubtResends < 0 {
		bad("setting in-doubt-resends must be >= 0")
	}
	if c.Lease < 500*time.Millisecond {
		bad("setting lease must be at least 500ms (it is renewed every lease/3)")
	}
	if c.RebuildLease < time.Second {
		bad("setting rebuild-lease must be at least 1s")
	}
	if c.FreshWait <= 0 {
		bad("setting fresh-wait must be > 0")
	}
	return errors.Join(errs...)
}

// MaxGRPCRequestBytes bounds one gRPC request to notification: queries and
// test requests carry ids.
const MaxGRPCRequestBytes = 256 << 10

// Deps are the service's injected dependencies; zero values get defaults.
type Deps struct {
	Logger    *slog.Logger
	Clock     clock.Clock
	Telemetry *telemetry.Telemetry

	// Authentication is the server option that verifies who calls and
	// puts the identity.Caller in the context, installed before
	// authorization (nil: platform/authn's token verification, binding people through
	// the role-binding file when one is configured, else through the
	// token's claims; tests inject platform/authz/authztest).
	Authentication grpcserver.Option
}

// Service is a started notification service.
type Service struct {
	life *servicemain.Lifecycle
	cfg  Config
	deps Deps
	grpc *grpcserver.Server
	// roles are the role bindings in force (nil: none), the RoleBinder
	// of authentication (issue #20).
	roles    *authz.Source
	receipts *servicemain.HTTPServer
	smtp     *channel.SMTP
	engine   *app.Engine
}

// New validates cfg, connects to Redis, ensures the topics, dials the rules
// service (presenting the service's own certificate) and binds the gRPC and
// receipts listeners, registering each release as it goes: a New that
// fails releases what it had acquired.
func New(ctx context.Context, cfg Config, deps Deps) (s *Service, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	deps.Logger, deps.Clock, deps.Telemetry = servicemain.Defaults(ServiceName, deps.Logger, deps.Clock, deps.Telemetry)
	cfg.Log = cfg.Log.Observed(deps.Logger, deps.Telemetry) // refused records are logged and counted wherever they are read
	s = &Service{life: servicemain.NewLifecycle(deps.Logger), cfg: cfg, deps: deps}
	defer s.life.Rollback(&err)
	// One identity, reloaded once, serves gRPC and calls rules.
	var identity *mtls.Source
	if cfg.GRPC.TLSCertFile != "" {
		if identity, err = mtls.Load(cfg.GRPC.TLSFiles(), mtls.Options{Logger: deps.Logger}); err != nil {
			return nil, fmt.Errorf("gRPC TLS (settings grpc-tls-cert, grpc-tls-key, grpc-client-ca): %w", err)
		}
	}
	rdb, err := redisconn.NewClient(cfg.Redis, nil)
	if err != nil {
		return nil, err
	}
	s.life.OnClose("redis", rdb.Close)
	if err := rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("connect to redis (setting redis-addr): %w", err)
	}
	// The consumer lanes' and the workers' pipelines share round trips: at
	// 1,000 alerts/s that took about a tenth off notification's CPU and more
	// off Redis's (docs/performance.md, round 6).
	batch := redisbatch.New(rdb)
	s.life.OnClose("redis batcher", func() error { batch.Close(); return nil })
	if err := eventlog.EnsureTopics(ctx, cfg.Log, deps.Logger); err != nil {
		return nil, fmt.Errorf("ensure topics: %w", err)
	}
	writer := eventlog.NewWriter(cfg.Log, app.Producer, deps.Telemetry)
	s.life.OnClose("event writer", writer.Close)
	// Every send is decided on the alert as the log has it: the projection
	// plus the alert's events the group has not committed past
	// (docs/design.md, "Deciding on fresh state").
	tail := kafkatail.New(cfg.Log, cfg.GroupID)
	s.life.OnClose("log tail", func() error { tail.Close(); return nil })
	conn, err := grpcserver.Dial(ctx, cfg.Rules.Addr, deps.Telemetry, grpcserver.ClientTLS(identity, cfg.Rules.ServerName))
	if err != nil {
		return nil, fmt.Errorf("dial rules service (setting rules-addr): %w", err)
	}
	s.life.OnClose("rules client", conn.Close)
	senders, err := s.senders()
	if err != nil {
		return nil, err
	}
	if s.smtp != nil {
		s.life.OnClose("smtp client", s.smtp.Close)
	}
	links, err := acklink.LoadSigner(cfg.AckLinkKeyFile)
	if err != nil {
		return nil, fmt.Errorf("setting ack-link-key-file: %w", err)
	}
	deps.Logger.Info("acknowledge links signed", "kid", links.KeyID())
	refs, err := alertref.New([]byte(cfg.ReferenceKey))
	if err != nil {
		return nil, fmt.Errorf("setting reference-key: %w", err)
	}
	renderer := content.NewRenderer(nil)
	if cfg.TemplatesDir != "" {
		if st, err := os.Stat(cfg.TemplatesDir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("setting templates-dir: %s is not a directory", cfg.TemplatesDir)
		}
		renderer = content.NewRenderer(os.DirFS(cfg.TemplatesDir))
	}
	s.engine = app.NewEngine(app.Options{
		Store:    redisstore.New(rdb, cfg.RedisPrefix).PipelinesVia(batch).ScriptsVia(batch),
		Resolver: rulesclient.New(rulesv1.NewRulesServiceClient(conn), cfg.SendTimeout),
		Log:      writer, Senders: senders, Renderer: renderer,
		Backoff: domain.Backoff{Initial: cfg.RetryInitial, Max: cfg.RetryMax, MaxAttempts: uint32(cfg.RetryAttempts)},
		Limit:   domain.RateLimit{Max: cfg.RateLimitMax, Window: cfg.RateLimitWindow}, DigestAfter: cfg.RateLimitDigestAfter,
		Lease: cfg.Lease, SendTimeout: cfg.SendTimeout, InDoubtResends: uint32(cfg.InDoubtResends), Tail: tail, FreshWait: cfg.FreshWait, RebuildLease: cfg.RebuildLease, Workers: cfg.Workers, ScheduleWorkers: cfg.ScheduleWorkers, MaxIdle: cfg.MaxIdle,
		AckBaseURL: cfg.AckBaseURL, AckLinks: links, AckLinkTTL: cfg.AckLinkTTL, AckLinkMinTTL: cfg.AckLinkMinTTL, References: refs,
		Clock: deps.Clock, Logger: deps.Logger, Telemetry: deps.Telemetry,
	})
	api := app.NewAPI(s.engine)
	cfg.GRPC.Reflection = cfg.Security.Development()
	// Authorization (platform/authz): the method table and the role
	// bindings, after authentication. The bindings are the RoleBinder
	// authentication uses.
	grpcOpts, roles, err := authz.Configure(cfg.RoleBindingsFile, cfg.Security.Development(), deps.Logger,
		authn.ForService(ctx, deps.Authentication, cfg.Authn, cfg.Security.Development(), cfg.GRPC.ClientCAFile != "", deps.Logger))
	if err != nil {
		return nil, err
	}
	s.roles = roles
	if s.grpc, err = grpcserver.New(cfg.GRPC, deps.Logger, deps.Telemetry, append([]grpcserver.Option{grpcserver.WithTLS(identity)}, grpcOpts...)...); err != nil {
		return nil, err
	}
	s.life.OnStop("grpc server", s.grpc.Close)
	s.life.Go("grpc server", s.grpc.Serve)
	notificationv1.RegisterNotificationServiceServer(s.grpc.GRPC(), api)
	// Without a secret (or token) nothing can be verified: those reports are refused.
	receipts := api.ReceiptsHandler([]byte(cfg.ReceiptsSecret), 5*time.Minute, cfg.NotifyCallbackToken)
	if s.receipts, err = servicemain.ListenHTTP(cfg.ReceiptsAddr, receipts, nil, servicemain.DefaultHTTPLimits()); err != nil {
		return nil, fmt.Errorf("delivery receipts (setting receipts-addr): %w", err)
	}
	s.life.OnStop("receipts server", s.receipts.Close)
	s.life.Go("receipts server", s.receipts.Serve)
	s.life.Go("engine", s.runEngine)
	return s, nil
}

// runEngine rebuilds the projection from the log first if Redis lost it,
// then marks the service ready, works jobs and consumes events until ctx
// is done.
func (s *Service) runEngine(ctx context.Context) error {
	if err := s.engine.EnsureProjection(ctx, s.readLog); err != nil {
		return err
	}
	// Ready only now: health reports SERVING once the projection is whole.
	s.grpc.SetServing(notificationv1.NotificationService_ServiceDesc.ServiceName)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	engineErr := make(chan error, 1)
	go func() {
		// An engine that stops stops the consumer too (and so the service).
		engineErr <- s.engine.Run(ctx)
		cancel()
	}()
	go s.watchEpoch(ctx)
	err := eventlog.Consume(ctx, eventlog.ConsumerConfig{Config: s.cfg.Log, GroupID: s.cfg.GroupID,
		Logger: s.deps.Logger, Telemetry: s.deps.Telemetry, Lanes: s.cfg.ConsumerLanes}, s.handle)
	cancel()
	eerr := <-engineErr
	if eerr != nil && !errors.Is(eerr, context.Canceled) && (err == nil || errors.Is(err, context.Canceled)) {
		return fmt.Errorf("engine: %w", eerr)
	}
	return err
}

func (s *Service) senders() (map[eventsv1.Channel]Sender, error) {
	cfg := s.cfg
	out := map[eventsv1.Channel]Sender{}
	logCh := channel.NewLog(s.deps.Logger)
	out[eventsv1.Channel_CHANNEL_LOG] = logCh
	if cfg.LogOnly {
		for _, c := range []eventsv1.Channel{eventsv1.Channel_CHANNEL_EMAIL, eventsv1.Channel_CHANNEL_SMS, eventsv1.Channel_CHANNEL_TEAMS, eventsv1.Channel_CHANNEL_WEBHOOK} {
			out[c] = logCh
		}
	} else {
		now := s.deps.Clock.Now
		if cfg.SMTPAddr != "" {
			tc := cfg.SMTPTLS
			if tc == nil && cfg.SMTPCAFile != "" {
				pem, err := os.ReadFile(cfg.SMTPCAFile)
				if err != nil {
					return nil, fmt.Errorf("read setting smtp-ca-file: %w", err)
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					return nil, fmt.Errorf("setting smtp-ca-file: %s holds no PEM certificate", cfg.SMTPCAFile)
				}
				tc = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			}
			s.smtp = channel.NewSMTP(channel.SMTPConfig{Addr: cfg.SMTPAddr, From: cfg.SMTPFrom, Username: cfg.SMTPUser,
				Password: cfg.SMTPPassword, StartTLS: cfg.SMTPStartTLS, TLS: tc, Timeout: cfg.SendTimeout, Now: now,
				MaxIdle: cfg.Workers})
			out[eventsv1.Channel_CHANNEL_EMAIL] = s.smtp
		}
		if cfg.NotifyBaseURL != "" {
			out[eventsv1.Channel_CHANNEL_SMS] = channel.NewNotify(channel.NotifyConfig{BaseURL: cfg.NotifyBaseURL,
				APIKey: cfg.NotifyAPIKey, TemplateID: cfg.NotifyTemplateID})
		}
		out[eventsv1.Channel_CHANNEL_TEAMS] = channel.NewTeams(nil)
		if cfg.WebhookSecret != "" {
			out[eventsv1.Channel_CHANNEL_WEBHOOK] = channel.NewWebhook([]byte(cfg.WebhookSecret), nil, now)
		}
	}
	for c, snd := range cfg.Senders {
		out[c] = snd
	}
	return out, nil
}

// handle applies one event, first rebuilding the projection from the log if
// Redis lost it since (a flush, a failover to an empty replica): an event
// must never be applied to an empty projection, or the alert's steps and
// dedup records would be missing and its messages lost or repeated.
// handle applies an event; when the projection is missing (Redis lost) it
// is rebuilt from the log first, so no event is applied to a partial one.
func (s *Service) handle(ctx context.Context, d eventlog.Delivery) error {
	err := s.engine.Handle(ctx, d)
	if !errors.Is(err, app.ErrProjectionLost) {
		return err
	}
	if err := s.engine.EnsureProjection(ctx, s.readLog); err != nil {
		return fmt.Errorf("restore the notification projection: %w: %w", fault.ErrUnavailable, err)
	}
	return s.engine.Handle(ctx, d)
}

// watchEpoch looks for a lost projection every second, so pending sends and
// retries are restored even when no event arrives to notice it.
func (s *Service) watchEpoch(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.engine.EnsureProjection(ctx, s.readLog); err != nil && ctx.Err() == nil {
				s.deps.Logger.WarnContext(ctx, "restore the notification projection", "error", err.Error())
			}
		}
	}
}

// Addrs returns the bound addresses: "grpc" and "receipts".
func (s *Service) Addrs() map[string]string {
	return map[string]string{"grpc": s.grpc.Addr(), "receipts": s.receipts.Addr()}
}

// Run consumes events, works jobs and serves gRPC and receipts until ctx is
// done or one of them fails, then stops the others and releases everything
// in reverse order of acquisition.
func (s *Service) Run(ctx context.Context) error {
	s.deps.Logger.InfoContext(ctx, "notification service started", slog.String("grpc", s.grpc.Addr()),
		slog.String("receipts", s.receipts.Addr()))
	return s.life.Run(ctx)
}

// readLog feeds every event of the events topic to fn.
func (s *Service) readLog(ctx context.Context, fn func(*eventsv1.Event) error) error {
	return eventlog.ReadTopic(ctx, s.cfg.Log, s.cfg.Log.EventsTopic, func(_, value []byte, _ int, _ int64) error {
		var ev eventsv1.Event
		if err := proto.Unmarshal(value, &ev); err != nil {
			return nil // undecodable records are the consumer's (DLQ) business
		}
		return fn(&ev)
	})
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
