// Package rules is Herald's rules service: it classifies every raised,
// amended or quarantined alert by its trust's policy bundle (category and
// clocks, CEL classification rules that may upgrade the source's flag with a
// recorded reason, never silently downgrade it) and appends AlertRouted with
// the absolute deadlines and a snapshot of the escalation policy in force.
// Its gRPC API offers the dry run (Evaluate), bundle validation and loading,
// the bundles in force, ResolveTargets for the notification service and the
// reachability check.
//
// This package is the service's one composition root: cmd/rules, the
// all-in-one binary and the tests start it through Run or New.
package rules

import (
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/authn"
	"github.com/herald-health/herald/platform/authz"
	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/platform/telemetry"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
	"github.com/herald-health/herald/services/rules/internal/adapters/grpcapi"
	"github.com/herald-health/herald/services/rules/internal/adapters/kafkalog"
	"github.com/herald-health/herald/services/rules/internal/app"
	"github.com/herald-health/herald/services/rules/internal/domain/routing"
)

// ServiceName is the gRPC health name prefix and telemetry service name.
const ServiceName = "herald-rules"

//go:embed bundles/demo
var demoBundles embed.FS

// DemoBundles returns the demo bundle directory (trusts RZZ and RZY) built
// into the binary, for the all-in-one dev binary and tests: set it as
// Config.BundleFS.
func DemoBundles() fs.FS {
	sub, err := fs.Sub(demoBundles, "bundles/demo")
	if err != nil { // cannot happen: the path is a constant inside the embed
		return demoBundles
	}
	return sub
}

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
	Log   eventlog.Config
	// GroupID is the Kafka consumer group.
	GroupID string
	// BundleDir is the policy bundle directory: one sub-directory of YAML
	// files per tenant (or one YAML file per tenant at the top).
	BundleDir string
	// BundlePoll is how often the bundle directory is checked for changes.
	BundlePoll time.Duration
	// BundleFS is used when BundleDir is empty (not a flag; e.g.
	// DemoBundles() for the all-in-one binary).
	BundleFS fs.FS
	// BundleTopic is the policy-bundle topic: proposals and reviews of
	// bundles (policy change control), one partition, kept forever.
	BundleTopic string
	// SkipRebuild skips reading the event log at start (the projection of
	// routed alerts then starts empty: only for tools and benchmarks).
	SkipRebuild bool
}

// DefaultBundleTopic is the policy-bundle topic's name.
const DefaultBundleTopic = "herald.policy-bundles.v1"

// MaxGRPCRequestBytes bounds one gRPC request to rules: a policy bundle
// sent for validation or loading is the largest.
const MaxGRPCRequestBytes = 4 << 20

// DefaultConfig returns the defaults: gRPC on 127.0.0.1:7002, a local
// Kafka, the bundle directory checked every 5 s, the production profile
// (every hop needs its TLS settings).
func DefaultConfig() Config {
	return Config{
		Security:    servicemain.Security{Profile: servicemain.ProfileProduction},
		GRPC:        grpcserver.Config{Addr: "127.0.0.1:7002", ShutdownGrace: 5 * time.Second, MaxRecvBytes: MaxGRPCRequestBytes},
		Authn:       authn.DefaultConfig(),
		Log:         eventlog.DefaultConfig(),
		GroupID:     "rules",
		BundlePoll:  5 * time.Second,
		BundleTopic: DefaultBundleTopic,
	}
}

// RegisterFlags binds the settings to fs (environment fallback HERALD_<FLAG>).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Security.RegisterFlags(fs)
	authz.RegisterFlag(fs, &c.RoleBindingsFile)
	c.GRPC.RegisterFlags(fs)
	c.Authn.RegisterFlags(fs)
	c.Log.RegisterFlags(fs)
	fs.StringVar(&c.GroupID, "group-id", c.GroupID, "Kafka consumer group")
	fs.StringVar(&c.BundleDir, "bundle-dir", c.BundleDir, "policy bundle directory: one sub-directory of YAML files per tenant")
	fs.DurationVar(&c.BundlePoll, "bundle-poll-interval", c.BundlePoll, "how often the bundle directory and the policy-bundle topic are checked for changes")
	fs.StringVar(&c.BundleTopic, "bundle-topic", c.BundleTopic, "Kafka topic of policy bundle proposals and approvals")
}

// Validate names the setting at fault.
func (c Config) Validate() error {
	var errs []error
	for _, err := range []error{c.GRPC.Validate(), c.Authn.Validate(!c.Security.Development()), c.Log.Validate(), c.Security.Check(c.GRPC, c.Log, c.Log.Signing())} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if c.GroupID == "" {
		errs = append(errs, errors.New("setting group-id is required"))
	}
	if c.BundleTopic == "" {
		errs = append(errs, errors.New("setting bundle-topic is required: the policy-bundle topic"))
	}
	if c.BundleDir == "" && c.BundleFS == nil {
		errs = append(errs, errors.New("setting bundle-dir (HERALD_BUNDLE_DIR) is required: the policy bundle directory"))
	}
	if c.BundleDir != "" {
		if info, err := os.Stat(c.BundleDir); err != nil || !info.IsDir() {
			errs = append(errs, fmt.Errorf("setting bundle-dir: %q is not a readable directory", c.BundleDir))
		}
	}
	if c.BundlePoll <= 0 {
		errs = append(errs, fmt.Errorf("setting bundle-poll-interval must be positive, got %s", c.BundlePoll))
	}
	return errors.Join(errs...)
}

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

// Service is a started rules service.
type Service struct {
	life     *servicemain.Lifecycle
	cfg      Config
	deps     Deps
	registry *app.Registry
	loader   *app.Loader
	changes  *app.ChangeControl
	router   *app.Router
	grpc     *grpcserver.Server
	// roles are the role bindings in force (nil: none), the RoleBinder
	// of authentication (issue #20).
	roles *authz.Source
}

// New validates cfg, loads the bundles (every one must be valid at start),
// ensures the topics, rebuilds the projection of routed alerts from the log
// and binds the gRPC listener, registering each release as it goes: a New
// that fails releases what it had acquired.
func New(ctx context.Context, cfg Config, deps Deps) (s *Service, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	deps.Logger, deps.Clock, deps.Telemetry = servicemain.Defaults(ServiceName, deps.Logger, deps.Clock, deps.Telemetry)
	cfg.Log = cfg.Log.Observed(deps.Logger, deps.Telemetry) // refused records are logged and counted wherever they are read
	s = &Service{life: servicemain.NewLifecycle(deps.Logger), cfg: cfg, deps: deps}
	defer s.life.Rollback(&err)
	meter := deps.Telemetry.Meter()
	rejected, err := meter.Int64Counter("herald_rules_bundle_rejections_total")
	if err != nil {
		return nil, fmt.Errorf("create bundle rejections counter: %w", err)
	}
	fsys := cfg.BundleFS
	if cfg.BundleDir != "" {
		fsys = os.DirFS(cfg.BundleDir)
	}
	s.registry = app.NewRegistry(deps.Clock.Now)
	s.loader = app.NewLoader(fsys, s.registry, deps.Logger, func(string) { rejected.Add(context.Background(), 1) })
	if err := eventlog.EnsureTopics(ctx, cfg.Log, deps.Logger); err != nil {
		return nil, fmt.Errorf("ensure topics: %w", err)
	}
	if err := kafkalog.EnsureBundleTopic(ctx, cfg.Log, cfg.BundleTopic, deps.Logger); err != nil {
		return nil, err
	}
	writer := eventlog.NewWriter(cfg.Log, app.Producer, deps.Telemetry)
	s.life.OnClose("event writer", writer.Close)
	bundleLog, closeBundleLog := kafkalog.NewBundleTopic(cfg.Log, cfg.BundleTopic, writer)
	s.life.OnClose("policy-bundle reader", func() error { closeBundleLog(); return nil })
	s.changes = app.NewChangeControl(bundleLog, s.registry, deps.Clock.Now, deps.Logger)
	if err := s.loadBundles(ctx); err != nil {
		return nil, err
	}
	snapshot := func() routing.Bundles { return s.registry.Snapshot() }
	s.router, err = app.NewRouter(snapshot, writer, deps.Clock.Now, deps.Logger, deps.Telemetry.Tracer(), meter)
	if err != nil {
		return nil, err
	}
	if !cfg.SkipRebuild {
		if err := s.rebuild(ctx); err != nil {
			return nil, err
		}
	}
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
	if s.grpc, err = grpcserver.New(cfg.GRPC, deps.Logger, deps.Telemetry, grpcOpts...); err != nil {
		return nil, err
	}
	s.life.OnStop("grpc server", s.grpc.Close)
	s.life.Go("grpc server", s.grpc.Serve)
	history, closeHistory := kafkalog.New(cfg.Log, cfg.Log.EventsTopic)
	s.life.OnClose("history reader", func() error { closeHistory(); return nil })
	rulesv1.RegisterRulesServiceServer(s.grpc.GRPC(), grpcapi.New(s.registry, deps.Clock.Now, deps.Logger, s.changes, history))
	s.life.Go("event consumer", func(ctx context.Context) error {
		return eventlog.Consume(ctx, eventlog.ConsumerConfig{Config: cfg.Log, GroupID: cfg.GroupID,
			Logger: deps.Logger, Telemetry: deps.Telemetry, Batch: s.handleRun}, s.handle)
	})
	s.life.Go("bundle watcher", func(ctx context.Context) error {
		s.watch(ctx)
		return ctx.Err()
	})
	return s, nil
}

// loadBundles puts the bundles in force at start: it reads the policy-bundle
// log (retrying while the broker is not ready), loads the directory (in the
// production profile only the bundles whose content a second person
// approved; in the development profile every valid one, unreviewed, so
// make run and the tests start with their seed bundles), then activates the
// latest approved bundle of each trust, which wins over the directory's.
func (s *Service) loadBundles(ctx context.Context) error {
	start := s.deps.Clock.Now()
	backoff := 100 * time.Millisecond
	for {
		err := s.changes.Refresh(ctx)
		if err == nil {
			break
		}
		if s.deps.Clock.Now().Sub(start) > rebuildPatience {
			return fmt.Errorf("read policy changes from %s: %w", s.cfg.BundleTopic, err)
		}
		s.deps.Logger.WarnContext(ctx, "policy-bundle topic not readable yet; retrying", "topic", s.cfg.BundleTopic, "error", err.Error(), "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return fmt.Errorf("read policy changes from %s: %w", s.cfg.BundleTopic, ctx.Err())
		case <-s.deps.Clock.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	if !s.cfg.Security.Development() {
		s.loader.SetGate(s.changes.Gate)
	}
	if err := s.loader.Load(ctx); err != nil {
		return fmt.Errorf("load policy bundles (setting bundle-dir): %w", err)
	}
	s.changes.Apply(ctx)
	tenants := s.registry.Snapshot().Tenants()
	switch {
	case len(tenants) > 0:
	case s.cfg.Security.Development():
		return errors.New("load policy bundles (setting bundle-dir): the directory holds no bundle")
	default:
		s.deps.Logger.WarnContext(ctx, "no policy bundle is approved: alerts are dead-lettered until one is proposed and approved by a second person (heraldctl bundle propose, bundle approve)")
	}
	return nil
}

// watch reloads the bundle directory and reads the policy-bundle log every
// poll interval, so every replica puts an approved bundle in force.
func (s *Service) watch(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.deps.Clock.After(s.cfg.BundlePoll):
		}
		_ = s.loader.Load(ctx) // problems are logged by Load
		if err := s.changes.Sync(ctx); err != nil {
			s.deps.Logger.WarnContext(ctx, "policy-bundle topic not readable; approvals are applied at the next poll", "error", err.Error())
		}
	}
}

// rebuild reads the event log up to its end so the router knows which
// causes were already routed (exactly one AlertRouted per cause across
// restarts) and each alert's category in force (for amendments). A broker
// that is not ready (a topic just created has no partition leader yet) is
// retried with backoff for up to rebuildPatience; observing is idempotent,
// so a partial read is harmless.
func (s *Service) rebuild(ctx context.Context) error {
	start := s.deps.Clock.Now()
	backoff := 100 * time.Millisecond
	for {
		n := 0
		err := eventlog.ReadTopic(ctx, s.cfg.Log, s.cfg.Log.EventsTopic, func(_, value []byte, partition int, offset int64) error {
			var ev eventsv1.Event
			if err := proto.Unmarshal(value, &ev); err != nil {
				return nil // undecodable records are the consumer's to dead-letter
			}
			s.router.ObserveAt(&ev, partition, offset)
			n++
			return nil
		})
		if err == nil {
			reader, closeIdle := kafkalog.New(s.cfg.Log, s.cfg.Log.EventsTopic)
			s.life.OnClose("partition reader", func() error { closeIdle(); return nil })
			s.router.TrackPartitions(reader)
			s.deps.Logger.InfoContext(ctx, "routed alerts rebuilt from the event log", "events", n, "alerts", s.router.Alerts(),
				"took", s.deps.Clock.Now().Sub(start).String())
			return nil
		}
		if s.deps.Clock.Now().Sub(start) > rebuildPatience {
			return fmt.Errorf("rebuild routed alerts from %s: %w", s.cfg.Log.EventsTopic, err)
		}
		s.deps.Logger.WarnContext(ctx, "event log not readable yet; retrying", "topic", s.cfg.Log.EventsTopic, "error", err.Error(), "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return fmt.Errorf("rebuild routed alerts from %s: %w", s.cfg.Log.EventsTopic, ctx.Err())
		case <-s.deps.Clock.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// rebuildPatience bounds how long start-up waits for a readable event log.
const rebuildPatience = time.Minute

// Addrs returns the bound addresses: "grpc".
func (s *Service) Addrs() map[string]string {
	return map[string]string{"grpc": s.grpc.Addr()}
}

// Run serves gRPC, consumes the event log and watches the bundle directory
// until ctx is done or one of them fails, then stops the others and
// releases the writer and the listener.
func (s *Service) Run(ctx context.Context) error {
	s.grpc.SetServing(rulesv1.RulesService_ServiceDesc.ServiceName)
	s.deps.Logger.InfoContext(ctx, "rules service started", slog.String("grpc", s.grpc.Addr()),
		slog.Any("tenants", s.registry.Snapshot().Tenants()))
	return s.life.Run(ctx)
}

func (s *Service) handle(ctx context.Context, d eventlog.Delivery) error {
	err := s.router.HandleAt(ctx, d.Event, d.Partition, d.Offset)
	if errors.Is(err, app.ErrUnroutable) {
		return eventlog.Permanent(err)
	}
	return err
}

// handleRun routes a run of events fetched together, their routings in one
// append. Any error hands the run back to the consumer, which handles its
// events one by one through handle (and so dead-letters an unroutable one
// alone); what the run appended is skipped then.
func (s *Service) handleRun(ctx context.Context, run []eventlog.Delivery) error {
	evs := make([]*eventsv1.Event, len(run))
	offsets := make([]int64, len(run))
	for i, d := range run {
		evs[i], offsets[i] = d.Event, d.Offset
	}
	return s.router.HandleRunAt(ctx, evs, run[0].Partition, offsets)
}

// Run starts the service and blocks until ctx is done.
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
