// Package acknowledgement is Herald's acknowledgement service: it owns the
// alert lifecycle (the closed loop). It folds the alert event log into the
// lifecycle projection (mirrored in Redis, published to the compacted topic
// herald.alert-state.v1), takes the Acknowledge / Decline / RecordAction /
// MarkRead / Close commands over gRPC and by acknowledge link (HTTP), and
// runs the Redis SLA timers that escalate an unaccepted alert step by step,
// record breached clocks and finally put it in the trust's fail-safe queue.
//
// This package is the service's one composition root: cmd/acknowledgement,
// the all-in-one dev binary and the tests start it through Run or New.
package acknowledgement

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herald-health/herald/platform/acklink"
	"github.com/herald-health/herald/platform/alertref"
	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/redisbatch"
	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/timers"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	"github.com/herald-health/herald/services/acknowledgement/internal/adapters/ackhttp"
	"github.com/herald-health/herald/services/acknowledgement/internal/adapters/grpcapi"
	"github.com/herald-health/herald/services/acknowledgement/internal/adapters/kafkalog"
	"github.com/herald-health/herald/services/acknowledgement/internal/adapters/redisstore"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
	"github.com/redis/go-redis/v9"
)

// ServiceName is the gRPC health name and telemetry service name.
const ServiceName = "herald-acknowledgement"

// Config is the service's configuration.
type Config struct {
	GRPC grpcserver.Config
	// HTTPAddr is where the acknowledge-link pages listen.
	HTTPAddr string
	// PublicURL is the external base URL of those pages (OIDC redirect).
	PublicURL string
	Log       eventlog.Config
	// GroupID is the Kafka consumer group shared by the replicas.
	GroupID       string
	RedisAddr     string
	RedisPassword string
	RedisDB       int
	// RedisNamespace prefixes every key; replicas share it.
	RedisNamespace string
	// Replica names this process in events and logs (default host-pid).
	Replica string
	// AckLinkSecret verifies acknowledge-link tokens (>= 32 bytes; the
	// notification service signs with the same secret).
	AckLinkSecret string
	// ReferenceKey keys the alert references people see (>= 32 bytes, the
	// same in notification); empty derives one from AckLinkSecret.
	ReferenceKey string
	// DevIdentity identifies every link user as this person id, with no
	// login (development only, e.g. `make run`); "link-recipient" trusts
	// the person the link was sent to. Empty in production: OIDC is used.
	DevIdentity string
	// OIDC login (authorization-code flow) for acknowledge links.
	OIDCIssuer       string
	OIDCClientID     string
	OIDCClientSecret string
	// OIDCPersonClaim is the ID-token claim that holds Herald's person id.
	OIDCPersonClaim string

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
}

// DefaultConfig returns loopback addresses, a local Kafka and Redis, a 5 s
// timer lease (a timer claimed by a replica that dies is fired by another
// within it: docs/performance.md, "Failover") and a 1 s epoch check.
func DefaultConfig() Config {
	return Config{
		GRPC:             grpcserver.Config{Addr: "127.0.0.1:7003", ShutdownGrace: 5 * time.Second},
		HTTPAddr:         "127.0.0.1:8003",
		PublicURL:        "http://127.0.0.1:8003",
		Log:              eventlog.DefaultConfig(),
		GroupID:          "acknowledgement",
		RedisAddr:        "127.0.0.1:6379",
		RedisNamespace:   "herald",
		OIDCPersonClaim:  "sub",
		TimerLease:       5 * time.Second,
		TimerShards:      1,
		TimerMaxSleep:    time.Second,
		TimerConcurrency: 32,
		ConsumerLanes:    8,
		EpochEvery:       time.Second,
		CommandWait:      3 * time.Second,
		WatchdogEvery:    15 * time.Second,
		WatchdogBound:    time.Minute,
	}
}

// RegisterFlags binds the settings to fs (environment fallback HERALD_<FLAG>).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Log.RegisterFlags(fs)
	fs.StringVar(&c.GRPC.Addr, "grpc-addr", c.GRPC.Addr, "gRPC listen address")
	fs.StringVar(&c.GRPC.TLSCertFile, "grpc-tls-cert", c.GRPC.TLSCertFile, "gRPC TLS certificate (PEM)")
	fs.StringVar(&c.GRPC.TLSKeyFile, "grpc-tls-key", c.GRPC.TLSKeyFile, "gRPC TLS key (PEM)")
	fs.StringVar(&c.GRPC.ClientCAFile, "grpc-client-ca", c.GRPC.ClientCAFile, "require client certificates signed by this CA (PEM)")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "acknowledge-link HTTP listen address")
	fs.StringVar(&c.PublicURL, "public-url", c.PublicURL, "external base URL of the acknowledge-link pages")
	fs.StringVar(&c.GroupID, "group-id", c.GroupID, "Kafka consumer group")
	fs.StringVar(&c.RedisAddr, "redis-addr", c.RedisAddr, "Redis address")
	fs.StringVar(&c.RedisPassword, "redis-password", c.RedisPassword, "Redis password")
	fs.IntVar(&c.RedisDB, "redis-db", c.RedisDB, "Redis database")
	fs.StringVar(&c.RedisNamespace, "redis-namespace", c.RedisNamespace, "namespace of Redis keys")
	fs.StringVar(&c.Replica, "replica", c.Replica, "name of this replica (default host-pid)")
	fs.StringVar(&c.AckLinkSecret, "ack-link-secret", c.AckLinkSecret, "HMAC secret of acknowledge links (>= 32 bytes)")
	fs.StringVar(&c.ReferenceKey, "reference-key", c.ReferenceKey, "HMAC key of the alert references people see (>= 32 bytes, the same in notification; empty: derived from ack-link-secret)")
	fs.StringVar(&c.DevIdentity, "dev-identity", c.DevIdentity, "development only: identify link users as this person id (or link-recipient), no login")
	fs.StringVar(&c.OIDCIssuer, "oidc-issuer", c.OIDCIssuer, "OpenID Connect issuer URL for link logins")
	fs.StringVar(&c.OIDCClientID, "oidc-client-id", c.OIDCClientID, "OpenID Connect client id")
	fs.StringVar(&c.OIDCClientSecret, "oidc-client-secret", c.OIDCClientSecret, "OpenID Connect client secret")
	fs.StringVar(&c.OIDCPersonClaim, "oidc-person-claim", c.OIDCPersonClaim, "ID-token claim holding the person id")
	fs.DurationVar(&c.TimerLease, "timer-lease", c.TimerLease, "lease of a claimed timer")
	fs.IntVar(&c.TimerShards, "timer-shards", c.TimerShards, "timer shards (Redis Cluster slots)")
	fs.DurationVar(&c.TimerMaxSleep, "timer-max-sleep", c.TimerMaxSleep, "longest timer poller sleep")
	fs.IntVar(&c.TimerConcurrency, "timer-concurrency", c.TimerConcurrency, "timer handlers at once per replica")
	fs.IntVar(&c.ConsumerLanes, "consumer-lanes", c.ConsumerLanes, "alerts of one partition handled at once (each alert's events stay in order)")
	fs.DurationVar(&c.EpochEvery, "epoch-every", c.EpochEvery, "how often to check Redis for a wipe")
	fs.DurationVar(&c.CommandWait, "command-wait", c.CommandWait, "how long a command waits for the projection")
	fs.DurationVar(&c.WatchdogEvery, "watchdog-every", c.WatchdogEvery, "how often the overdue watchdog looks for alerts whose SLA timer was lost")
	fs.DurationVar(&c.WatchdogBound, "watchdog-bound", c.WatchdogBound, "how far past its deadline an alert's timer counts as lost and is re-armed")
}

// Validate names the setting at fault.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if err := c.GRPC.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Log.Validate(); err != nil {
		errs = append(errs, err)
	}
	for name, v := range map[string]string{"http-addr": c.HTTPAddr, "public-url": c.PublicURL, "group-id": c.GroupID,
		"redis-addr": c.RedisAddr, "redis-namespace": c.RedisNamespace} {
		if v == "" {
			bad("setting %s is required", name)
		}
	}
	if strings.ContainsAny(c.RedisNamespace, "{}: ") {
		bad("setting redis-namespace must not contain braces, colons or spaces")
	}
	if len(c.AckLinkSecret) < acklink.MinSecretLen {
		bad("setting ack-link-secret must be at least %d bytes", acklink.MinSecretLen)
	}
	if c.ReferenceKey != "" && len(c.ReferenceKey) < alertref.MinKeyLen {
		bad("setting reference-key must be at least %d bytes", alertref.MinKeyLen)
	}
	if c.DevIdentity == "" && c.OIDCIssuer == "" {
		bad("setting oidc-issuer is required (or dev-identity in development)")
	}
	if c.OIDCIssuer != "" && (c.OIDCClientID == "" || c.OIDCPersonClaim == "") {
		bad("settings oidc-client-id and oidc-person-claim are required with oidc-issuer")
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
	return errors.Join(errs...)
}

// Deps are the service's injected dependencies; zero values get defaults.
type Deps struct {
	Logger    *slog.Logger
	Clock     clock.Clock
	Telemetry *telemetry.Telemetry
	// Hooks are test points of the application (not for production).
	Hooks app.Hooks
}

// Service is a started acknowledgement service.
type Service struct {
	cfg     Config
	deps    Deps
	rdb     *redis.Client
	scripts *redisbatch.Batcher
	writer  *eventlog.Writer
	tail    *kafkalog.Tail
	store   *redisstore.Store
	timers  *timers.Store
	poller  *timers.Poller
	app     *app.App
	hub     *app.Hub
	grpc    *grpcserver.Server
	http    *http.Server
	hlis    net.Listener
}

// New validates cfg, connects to Redis, ensures the topics and binds the
// gRPC and HTTP listeners.
func New(ctx context.Context, cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	deps.Logger, deps.Clock, deps.Telemetry = servicemain.Defaults(ServiceName, deps.Logger, deps.Clock, deps.Telemetry)
	if cfg.Replica == "" {
		host, _ := os.Hostname()
		cfg.Replica = host + "-" + strconv.Itoa(os.Getpid())
	}
	s := &Service{cfg: cfg, deps: deps}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()
	s.rdb = redis.NewClient(&redis.Options{Addr: cfg.RedisAddr, Password: cfg.RedisPassword, DB: cfg.RedisDB})
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("connect to redis at %s (setting redis-addr): %w", cfg.RedisAddr, err)
	}
	if err := eventlog.EnsureTopics(ctx, cfg.Log, deps.Logger); err != nil {
		return nil, fmt.Errorf("ensure topics: %w", err)
	}
	s.writer = eventlog.NewWriter(cfg.Log, "acknowledgement/"+cfg.Replica, deps.Telemetry)
	// The lanes' script calls (read and store a state, arm or cancel its
	// timer) share round trips: at 1,000 alerts/s that took 5-10% off
	// acknowledgement's and Redis's CPU (docs/performance.md, round 6).
	s.scripts = redisbatch.New(s.rdb)
	s.store = redisstore.New(s.rdb, cfg.RedisNamespace).ScriptsVia(s.scripts)
	tcfg := timers.DefaultConfig()
	tcfg.Namespace = cfg.RedisNamespace
	tcfg.Shards = cfg.TimerShards
	tcfg.Lease = cfg.TimerLease
	tcfg.WakeWithin = cfg.TimerMaxSleep
	var err error
	if s.timers, err = timers.New(s.rdb, deps.Clock, tcfg); err != nil {
		return nil, fmt.Errorf("timer store: %w", err)
	}
	s.timers.ScriptsVia(s.scripts)
	s.hub = app.NewHub()
	// Decisions read the alert's events the group has not committed past
	// (docs/design.md, "Deciding on fresh state").
	s.tail = kafkalog.NewTail(cfg.Log, cfg.GroupID)
	s.app = app.New(app.Deps{
		States: s.store, Recovery: s.store, Log: s.writer, Topic: kafkalog.NewStateTopic(cfg.Log, s.writer),
		Timers: s.timers, Lister: s.store, Tail: s.tail, Clock: deps.Clock, Logger: deps.Logger,
		Tel: deps.Telemetry, Hooks: deps.Hooks, Producer: "acknowledgement/" + cfg.Replica, CommandWait: cfg.CommandWait,
	})
	if s.poller, err = timers.NewPoller(s.timers, timers.PollerConfig{
		Concurrency: cfg.TimerConcurrency, MaxSleep: cfg.TimerMaxSleep, EpochEvery: cfg.EpochEvery,
		RetryMin: 50 * time.Millisecond, RetryMax: 5 * time.Second, Logger: deps.Logger,
		OnEpochLost: func(ctx context.Context) error { return s.app.Recover(ctx, cfg.Replica) },
	}); err != nil {
		return nil, fmt.Errorf("timer poller: %w", err)
	}
	if s.grpc, err = grpcserver.New(cfg.GRPC, deps.Logger, deps.Telemetry); err != nil {
		return nil, err
	}
	refs, err := alertref.Configured(cfg.ReferenceKey, []byte(cfg.AckLinkSecret))
	if err != nil {
		return nil, fmt.Errorf("setting reference-key: %w", err)
	}
	ackv1.RegisterAcknowledgementServiceServer(s.grpc.GRPC(), grpcapi.New(s.app, s.hub, refs))
	links, err := ackhttp.New(ctx, ackhttp.Config{
		Secret: []byte(cfg.AckLinkSecret), References: refs, PublicURL: cfg.PublicURL, DevIdentity: cfg.DevIdentity,
		OIDCIssuer: cfg.OIDCIssuer, OIDCClientID: cfg.OIDCClientID, OIDCClientSecret: cfg.OIDCClientSecret,
		OIDCPersonClaim: cfg.OIDCPersonClaim,
	}, s.app, s.store, deps.Clock, deps.Logger)
	if err != nil {
		return nil, err
	}
	if s.hlis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("listen on %s (setting http-addr): %w", cfg.HTTPAddr, err)
	}
	s.http = &http.Server{Handler: links, ReadHeaderTimeout: 5 * time.Second}
	ok = true
	return s, nil
}

// Addrs returns the bound addresses: "grpc" and "http".
func (s *Service) Addrs() map[string]string {
	return map[string]string{"grpc": s.grpc.Addr(), "http": s.hlis.Addr().String()}
}

// Run consumes the event log, fires timers, watches for a wiped Redis and
// serves gRPC and HTTP until ctx is done, then stops them and cleans up in
// reverse order.
func (s *Service) Run(ctx context.Context) error {
	defer s.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log := s.deps.Logger
	tasks := map[string]func(context.Context) error{
		"grpc": s.grpc.Serve,
		"http": func(context.Context) error {
			err := s.http.Serve(s.hlis)
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return err
		},
		"recovery": func(ctx context.Context) error { return s.app.RunRecovery(ctx, s.cfg.Replica, s.cfg.EpochEvery) },
		"changes":  func(ctx context.Context) error { return s.hub.Feed(ctx, s.store.Subscribe, time.Second, log) },
		"timers":   func(ctx context.Context) error { return s.poller.Run(ctx, s.app.FireTimer) },
		"watchdog": func(ctx context.Context) error {
			return s.app.RunWatchdog(ctx, s.store, app.WatchdogConfig{Every: s.cfg.WatchdogEvery, Bound: s.cfg.WatchdogBound})
		},
		"consumer": func(ctx context.Context) error {
			return eventlog.Consume(ctx, eventlog.ConsumerConfig{Config: s.cfg.Log, GroupID: s.cfg.GroupID,
				Logger: log, Telemetry: s.deps.Telemetry, MaxBackoff: time.Second, Lanes: s.cfg.ConsumerLanes}, kafkalog.Handler(s.app))
		},
	}
	errc := make(chan error, len(tasks))
	var wg sync.WaitGroup
	for name, run := range tasks {
		wg.Go(func() {
			if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}
	s.grpc.SetServing(ackv1.AcknowledgementService_ServiceDesc.ServiceName)
	log.InfoContext(ctx, "acknowledgement service started", slog.String("grpc", s.grpc.Addr()),
		slog.String("http", s.hlis.Addr().String()), slog.String("replica", s.cfg.Replica))
	var first error
	select {
	case first = <-errc:
	case <-ctx.Done():
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = s.http.Shutdown(sctx)
	scancel()
	wg.Wait()
	return first
}

func (s *Service) close() {
	if s.hlis != nil {
		_ = s.hlis.Close()
	}
	if s.writer != nil {
		_ = s.writer.Close()
	}
	if s.tail != nil {
		s.tail.Close()
	}
	if s.scripts != nil {
		s.scripts.Close()
	}
	if s.rdb != nil {
		_ = s.rdb.Close()
	}
}

// Run builds the service and runs it until ctx is done.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	s, err := New(ctx, cfg, deps)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}
