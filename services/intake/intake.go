// Package intake is Herald's intake service: the composition root that
// accepts flagged imaging reports over HL7 v2 (MLLP), FHIR R4 REST and gRPC,
// records them on the event log (AlertRaised, AlertQuarantined,
// AlertAmended, AlertCancelled) and answers success only once the event is
// durable. The same Run is used by cmd/intake, the all-in-one binary and
// tests.
package intake

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/herald-health/herald/platform/authn"
	"github.com/herald-health/herald/platform/authz"
	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/mtls"
	"github.com/herald-health/herald/platform/redisbatch"
	"github.com/herald-health/herald/platform/redisconn"
	"github.com/herald-health/herald/platform/sealing"
	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/platform/telemetry"
	intakev1 "github.com/herald-health/herald/proto/gen/herald/intake/v1"
	"github.com/herald-health/herald/services/intake/internal/adapters/fhirapi"
	"github.com/herald-health/herald/services/intake/internal/adapters/grpcapi"
	"github.com/herald-health/herald/services/intake/internal/adapters/hl7in"
	"github.com/herald-health/herald/services/intake/internal/adapters/outcomes"
	"github.com/herald-health/herald/services/intake/internal/app"
	"github.com/herald-health/herald/services/intake/internal/domain"
	"github.com/herald-health/herald/services/intake/internal/mllp"
	"github.com/herald-health/herald/services/intake/internal/senders"
)

// SenderBinding is one sending system and the trusts it may send for.
type SenderBinding = senders.Binding

// SenderBindings answer whether a sender (its certificate's identity) may
// send for a trust.
type SenderBindings interface {
	Allows(identity, trust string) bool
}

// LoadSenderBindings reads a sender-bindings file (see -sender-bindings-file
// and the intake README).
func LoadSenderBindings(path string) (SenderBindings, error) {
	return senders.Load(path)
}

// TenantSettings are one trust's extraction settings (see the tenants file
// format in README.md).
type TenantSettings = domain.TenantSettings

// Config configures the intake service.
type Config struct {
	// Security is the transport policy (-profile, -insecure): every
	// listener and client below must be TLS and authenticated unless a
	// development system asked for plaintext.
	Security servicemain.Security
	// RoleBindingsFile is the role-binding file (platform/authz): who may
	// call which method for which trust.
	RoleBindingsFile string
	GRPC             grpcserver.Config
	// Authn verifies the access tokens of people's gRPC calls
	// (platform/authn: -oidc-issuer, -oidc-audience, ...).
	Authn authn.Config
	Log   eventlog.Config
	// Redis holds the record of accepted messages.
	Redis redisconn.Config

	// MLLPAddr is where HL7 v2 over MLLP is served.
	MLLPAddr string
	// MLLPTLS is the MLLP listener's certificate and key, and the CA
	// bundle of the senders it accepts (CAFile): mutual TLS when all are
	// set.
	MLLPTLS mtls.Files
	// MaxMessageBytes bounds one HL7 message (MLLP frame). The event carries
	// the raw message and its parsed content, so keep it under half of the
	// topic's max.message.bytes (1 MiB by default); at most 512 KiB.
	MaxMessageBytes int
	// MLLPIdleTimeout closes a connection that sends no complete frame for
	// this long.
	MLLPIdleTimeout time.Duration
	// HandleTimeout bounds handling one message, durable append included.
	HandleTimeout time.Duration
	// MaxConnections bounds concurrent MLLP connections.
	MaxConnections int
	// MaxConnectionsPerSender bounds one sender's (remote address's)
	// concurrent MLLP connections, so one sender cannot take every slot.
	MaxConnectionsPerSender int
	// MLLPFrameTimeout bounds receiving the rest of a frame once it has
	// started (a trickling sender), separately from MLLPIdleTimeout.
	MLLPFrameTimeout time.Duration

	// FHIRAddr is where the FHIR R4 REST endpoint is served.
	FHIRAddr string
	// FHIRTLS is the FHIR listener's certificate and key, and the CA
	// bundle of the senders it accepts (CAFile): HTTPS with client
	// certificates when all are set.
	FHIRTLS mtls.Files
	// MaxFHIRBytes bounds one FHIR request body (same reasoning; at most
	// 512 KiB).
	MaxFHIRBytes int64
	// FHIRResolveTimeout bounds reading a ServiceRequest from a trust's FHIR
	// server (tenant setting fhir_server), for the referrer of a report that
	// does not carry its order.
	FHIRResolveTimeout time.Duration

	// OutcomePrefix is the key prefix of the records of accepted messages.
	OutcomePrefix string
	// OutcomeTTL is how long a resend is recognised by its message id.
	OutcomeTTL time.Duration

	// TenantsFile is a YAML or JSON file {tenants: [...]} of per-trust
	// settings; when set it replaces Tenants.
	TenantsFile string
	// Tenants are used when no file is given.
	Tenants []TenantSettings

	// SenderBindingsFile binds each sending system (its client
	// certificate's identity: MLLP, FHIR, or the calling service on gRPC)
	// to the trusts it may send for (internal/senders); a message claiming
	// another trust is refused. Required in the production profile; when
	// set it replaces SenderBindings.
	SenderBindingsFile string
	// SenderBindings are used when no file is given (cmd/herald's demo).
	SenderBindings []SenderBinding

	// Keys are the trusts' patient-data keys (platform/sealing): patient
	// data is sealed before it is appended. Required in the production
	// profile.
	Keys sealing.Files

	// Producer names this replica in the events it appends.
	Producer string
}

// MaxGRPCRequestBytes bounds one gRPC request to intake: a report and its
// parsed content must fit one Kafka record.
const MaxGRPCRequestBytes = 512 << 10

// DefaultConfig listens on loopback and knows no trust: a deployment names
// its trusts in a tenants file (setting tenants-file), and Validate fails
// until it does, so that no synthetic trust is ever served by default. The
// demo (cmd/herald) and the tests configure the synthetic trusts. The
// profile is production: every hop needs its TLS settings.
func DefaultConfig() Config {
	return Config{
		Security:        servicemain.Security{Profile: servicemain.ProfileProduction},
		GRPC:            grpcserver.Config{Addr: "127.0.0.1:7001", MaxRecvBytes: MaxGRPCRequestBytes},
		Authn:           authn.DefaultConfig(),
		Log:             eventlog.DefaultConfig(),
		Redis:           redisconn.Config{Addr: "127.0.0.1:6379"},
		MLLPAddr:        "127.0.0.1:2575",
		MaxMessageBytes: 256 << 10,
		MLLPIdleTimeout: 5 * time.Minute,
		HandleTimeout:   30 * time.Second,
		MaxConnections:  1024,
		// A trust's RIS keeps a handful of connections; 64 leaves room for
		// a pool without letting one sender hold the 1,024.
		MaxConnectionsPerSender: 64,
		MLLPFrameTimeout:        time.Minute,
		FHIRAddr:                "127.0.0.1:8001",
		MaxFHIRBytes:            256 << 10,
		// FHIRResolveTimeout stays well inside a sender's usual 30-60 s
		// wait for the answer.
		FHIRResolveTimeout: 5 * time.Second,
		OutcomePrefix:      "herald:intake:outcome:",
		OutcomeTTL:         30 * 24 * time.Hour,
		Producer:           "intake",
	}
}

// RegisterFlags binds the settings to fs (environment fallback HERALD_...).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Security.RegisterFlags(fs)
	authz.RegisterFlag(fs, &c.RoleBindingsFile)
	c.GRPC.RegisterFlags(fs)
	c.Authn.RegisterFlags(fs)
	c.Log.RegisterFlags(fs)
	c.Redis.RegisterFlags(fs)
	fs.StringVar(&c.MLLPAddr, "mllp-addr", c.MLLPAddr, "HL7 v2 MLLP listen address")
	mllpListener.RegisterFlags(fs, &c.MLLPTLS)
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", c.MaxMessageBytes, "largest HL7 message accepted")
	fs.DurationVar(&c.MLLPIdleTimeout, "mllp-idle-timeout", c.MLLPIdleTimeout, "close an MLLP connection idle this long")
	fs.DurationVar(&c.HandleTimeout, "handle-timeout", c.HandleTimeout, "bound on handling one message (durable append included)")
	fs.IntVar(&c.MaxConnections, "mllp-max-connections", c.MaxConnections, "most concurrent MLLP connections")
	fs.IntVar(&c.MaxConnectionsPerSender, "mllp-max-connections-per-sender", c.MaxConnectionsPerSender, "most concurrent MLLP connections from one sender (remote address)")
	fs.DurationVar(&c.MLLPFrameTimeout, "mllp-frame-timeout", c.MLLPFrameTimeout, "bound on receiving the rest of an MLLP frame once it has started")
	fs.StringVar(&c.FHIRAddr, "fhir-addr", c.FHIRAddr, "FHIR R4 REST listen address")
	fhirListener.RegisterFlags(fs, &c.FHIRTLS)
	fs.Int64Var(&c.MaxFHIRBytes, "max-fhir-bytes", c.MaxFHIRBytes, "largest FHIR request body accepted")
	fs.DurationVar(&c.FHIRResolveTimeout, "fhir-resolve-timeout", c.FHIRResolveTimeout, "bound on reading a ServiceRequest from a trust's FHIR server")
	fs.StringVar(&c.OutcomePrefix, "outcome-prefix", c.OutcomePrefix, "Redis key prefix of message outcomes")
	fs.DurationVar(&c.OutcomeTTL, "outcome-ttl", c.OutcomeTTL, "how long a resend is recognised")
	fs.StringVar(&c.TenantsFile, "tenants-file", c.TenantsFile, "YAML or JSON file of per-trust settings")
	fs.StringVar(&c.SenderBindingsFile, "sender-bindings-file", c.SenderBindingsFile, "YAML or JSON file binding each sender's certificate identity to the trusts (ODS codes) it may send for")
	c.Keys.RegisterFlags(fs)
	fs.StringVar(&c.Producer, "producer", c.Producer, "producer name in appended events")
}

// The listeners besides gRPC: mutual TLS with the senders' CA.
var (
	mllpListener = servicemain.Listener{Name: "mllp", What: "MLLP", ClientCA: true}
	fhirListener = servicemain.Listener{Name: "fhir", What: "FHIR", ClientCA: true}
)

// hops are every connection the service serves or makes.
func (c Config) hops() []servicemain.Hop {
	return []servicemain.Hop{c.GRPC, c.Log, c.Log.Signing(), c.Redis,
		mllpListener.Hop(c.MLLPTLS, c.MLLPAddr), fhirListener.Hop(c.FHIRTLS, c.FHIRAddr)}
}

// Validate names the setting at fault.
func (c Config) Validate() error {
	var errs []error
	for _, err := range []error{c.GRPC.Validate(), c.Authn.Validate(!c.Security.Development()), c.Log.Validate(), c.Redis.Validate(),
		mllpListener.Validate(c.MLLPTLS), fhirListener.Validate(c.FHIRTLS), c.Security.Check(c.hops()...)} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	req := map[string]string{"mllp-addr": c.MLLPAddr, "fhir-addr": c.FHIRAddr, "producer": c.Producer, "outcome-prefix": c.OutcomePrefix}
	for name, v := range req {
		if v == "" {
			errs = append(errs, fmt.Errorf("setting %s is required", name))
		}
	}
	if c.MaxMessageBytes < 1024 || c.MaxMessageBytes > 512<<10 {
		errs = append(errs, fmt.Errorf("setting max-message-bytes must be between 1024 and 524288 (the event must fit a Kafka record), got %d", c.MaxMessageBytes))
	}
	if c.MaxFHIRBytes < 1024 || c.MaxFHIRBytes > 512<<10 {
		errs = append(errs, fmt.Errorf("setting max-fhir-bytes must be between 1024 and 524288 (the event must fit a Kafka record), got %d", c.MaxFHIRBytes))
	}
	for name, d := range map[string]time.Duration{"mllp-idle-timeout": c.MLLPIdleTimeout, "handle-timeout": c.HandleTimeout, "outcome-ttl": c.OutcomeTTL, "fhir-resolve-timeout": c.FHIRResolveTimeout, "mllp-frame-timeout": c.MLLPFrameTimeout} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("setting %s must be positive, got %v", name, d))
		}
	}
	if c.MaxConnections < 1 {
		errs = append(errs, fmt.Errorf("setting mllp-max-connections must be at least 1, got %d", c.MaxConnections))
	}
	if c.MaxConnectionsPerSender < 1 || c.MaxConnectionsPerSender > c.MaxConnections {
		errs = append(errs, fmt.Errorf("setting mllp-max-connections-per-sender must be between 1 and mllp-max-connections (%d), got %d", c.MaxConnections, c.MaxConnectionsPerSender))
	}
	if c.TenantsFile == "" && len(c.Tenants) == 0 {
		errs = append(errs, errors.New("setting tenants-file is required (no tenants configured)"))
	}
	if err := c.Keys.Validate(!c.Security.Development()); err != nil {
		errs = append(errs, err)
	}
	if c.SenderBindingsFile == "" && len(c.SenderBindings) == 0 && !c.Security.Development() {
		errs = append(errs, errors.New("setting sender-bindings-file is required in the production profile (which sender may send for which trust)"))
	}
	return errors.Join(errs...)
}

//go:embed tenants/demo.yaml
var demoTenants []byte

// DemoTenants returns the settings of the demo trusts RZZ and RZY built into
// the binary (tenants/demo.yaml), for the all-in-one dev binary: their
// trigger phrases are the ones the demo policy bundles' rules look for.
func DemoTenants() ([]TenantSettings, error) {
	return parseTenants("tenants/demo.yaml", demoTenants)
}

// LoadTenants reads a tenants file: YAML or JSON (by extension .json), with
// a top-level "tenants" list. Unknown keys are errors, so a misspelt
// setting is not silently ignored.
func LoadTenants(path string) ([]TenantSettings, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read tenants-file %s: %w", path, err)
	}
	return parseTenants(path, b)
}

func parseTenants(path string, b []byte) ([]TenantSettings, error) {
	var err error
	var doc struct {
		Tenants []TenantSettings `json:"tenants" yaml:"tenants"`
	}
	if strings.EqualFold(filepath.Ext(path), ".json") {
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		err = dec.Decode(&doc)
	} else {
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		err = dec.Decode(&doc)
	}
	if err != nil {
		return nil, fmt.Errorf("parse tenants-file %s: %w", path, err)
	}
	if len(doc.Tenants) == 0 {
		return nil, fmt.Errorf("tenants-file %s: no tenants", path)
	}
	return doc.Tenants, nil
}

// Deps are the service's injected dependencies; zero values mean sensible
// defaults (discarded logs, the real clock, no-op telemetry).
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

	// KEK unwraps the keyring's data keys instead of the kek-file (a KMS;
	// tests inject one that fails).
	KEK sealing.KEK
}

// Service is a started intake service.
type Service struct {
	life *servicemain.Lifecycle
	log  *slog.Logger
	grpc *grpcserver.Server
	// roles are the role bindings in force (nil: none), the RoleBinder
	// of authentication (issue #20).
	roles *authz.Source
	mllp  *mllp.Server
	fhir  *servicemain.HTTPServer
}

// New validates cfg, ensures the event log topics, connects to Kafka and
// Redis and binds the gRPC, MLLP and FHIR listeners, registering each
// release as it goes: a New that fails releases what it had acquired.
// Redis being down does not stop intake (it is a cache).
func New(ctx context.Context, cfg Config, deps Deps) (s *Service, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	deps.Logger, deps.Clock, deps.Telemetry = servicemain.Defaults("herald-intake", deps.Logger, deps.Clock, deps.Telemetry)
	cfg.Log = cfg.Log.Observed(deps.Logger, deps.Telemetry) // refused records are logged and counted wherever they are read
	tenants := cfg.Tenants
	if cfg.TenantsFile != "" {
		if tenants, err = LoadTenants(cfg.TenantsFile); err != nil {
			return nil, err
		}
	}
	dir, err := domain.NewDirectory(tenants)
	if err != nil {
		return nil, fmt.Errorf("tenant settings: %w", err)
	}
	bindings, err := senderBindings(cfg)
	if err != nil {
		return nil, err
	}
	if bindings == nil {
		deps.Logger.WarnContext(ctx, "no sender bindings: any sender may send for any trust (development only)")
	}
	keys, err := cfg.Keys.Load(deps.KEK)
	if err != nil {
		return nil, err
	}
	var sealer app.Sealer
	if keys != nil {
		sealer = keys
	} else {
		deps.Logger.WarnContext(ctx, "no patient-data keys: patient data is written to the log in clear (development only)")
	}
	mllpTLS, err := mllpListener.TLS(cfg.MLLPTLS, mtls.Options{Logger: deps.Logger})
	if err != nil {
		return nil, err
	}
	fhirTLS, err := fhirListener.TLS(cfg.FHIRTLS, mtls.Options{Logger: deps.Logger})
	if err != nil {
		return nil, err
	}
	if err := eventlog.EnsureTopics(ctx, cfg.Log, deps.Logger); err != nil {
		return nil, fmt.Errorf("ensure event log topics: %w", err)
	}

	s = &Service{life: servicemain.NewLifecycle(deps.Logger), log: deps.Logger}
	defer s.life.Rollback(&err)
	writer := eventlog.NewWriter(cfg.Log, cfg.Producer, deps.Telemetry)
	s.life.OnClose("event writer", writer.Close)
	rdb, err := redisconn.NewClient(cfg.Redis, redisconn.Timeouts(time.Second, 1))
	if err != nil {
		return nil, err
	}
	s.life.OnClose("redis", rdb.Close)
	// Concurrent messages' outcome reads and writes share round trips.
	batch := redisbatch.New(rdb)
	s.life.OnClose("redis batcher", func() error { batch.Close(); return nil })
	if perr := rdb.Ping(ctx).Err(); perr != nil {
		deps.Logger.WarnContext(ctx, "redis unavailable at start; resends are re-appended harmlessly until it returns", "error", perr)
	}
	svc := app.New(app.Options{
		Directory: dir,
		Limits:    domain.DefaultLimits(),
		Appender:  writer,
		Outcomes:  outcomes.New(batch, cfg.OutcomePrefix, cfg.OutcomeTTL),
		Clock:     deps.Clock,
		Logger:    deps.Logger,
		Telemetry: deps.Telemetry,
		Producer:  cfg.Producer,
		IDs:       eventlog.ID,
		Senders:   bindings,
		Sealer:    sealer,
	})

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
	intakev1.RegisterIntakeServiceServer(s.grpc.GRPC(), grpcapi.New(svc))

	if s.mllp, err = mllp.Listen(cfg.MLLPAddr, mllp.ServerConfig{
		MaxFrame:          cfg.MaxMessageBytes,
		IdleTimeout:       cfg.MLLPIdleTimeout,
		WriteTimeout:      10 * time.Second,
		HandleTimeout:     cfg.HandleTimeout,
		MaxConns:          cfg.MaxConnections,
		MaxConnsPerSender: cfg.MaxConnectionsPerSender,
		FrameTimeout:      cfg.MLLPFrameTimeout,
		TLS:               mllpTLS,
	}, hl7in.New(svc, deps.Clock), deps.Logger); err != nil {
		return nil, err
	}
	s.life.OnClose("mllp listener", s.mllp.Close)
	s.life.Go("mllp server", s.mllp.Serve)

	if s.fhir, err = servicemain.ListenHTTP(cfg.FHIRAddr, fhirapi.New(svc, cfg.MaxFHIRBytes, cfg.FHIRResolveTimeout, deps.Logger), fhirTLS,
		servicemain.HTTPLimits{ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: time.Minute}); err != nil {
		return nil, fmt.Errorf("fhir (setting fhir-addr): %w", err)
	}
	s.life.OnStop("fhir listener", s.fhir.Close)
	s.life.Go("fhir server", s.fhir.Serve)
	return s, nil
}

// senderBindings loads the configured bindings; nil (an interface holding
// nothing, so every sender is allowed) when none are configured.
func senderBindings(cfg Config) (app.SenderBindings, error) {
	var b *senders.Bindings
	var err error
	switch {
	case cfg.SenderBindingsFile != "":
		b, err = senders.Load(cfg.SenderBindingsFile)
	case len(cfg.SenderBindings) > 0:
		if b, err = senders.New(cfg.SenderBindings); err != nil {
			err = fmt.Errorf("sender bindings: %w", err)
		}
	default:
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Addrs returns the bound addresses: "grpc", "mllp" and "fhir".
func (s *Service) Addrs() map[string]string {
	return map[string]string{"grpc": s.grpc.Addr(), "mllp": s.mllp.Addr(), "fhir": s.fhir.Addr()}
}

// Run serves until ctx is done or a listener fails, then stops the
// listeners (letting in-flight messages finish and be acknowledged) and
// releases the clients, in reverse order of acquisition.
func (s *Service) Run(ctx context.Context) error {
	s.grpc.SetServing(intakev1.IntakeService_ServiceDesc.ServiceName)
	s.log.InfoContext(ctx, "intake serving", "grpc", s.grpc.Addr(), "mllp", s.mllp.Addr(), "fhir", s.fhir.Addr())
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
