// Package intake is Herald's intake service: the composition root that
// accepts flagged imaging reports over HL7 v2 (MLLP), FHIR R4 REST and gRPC,
// records them on the event log (AlertRaised, AlertQuarantined,
// AlertAmended, AlertCancelled) and answers success only once the event is
// durable. The same Run is used by cmd/intake, the all-in-one binary and
// tests.
package intake

import (
	"context"
	"crypto/tls"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/redisbatch"
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
)

// TenantSettings are one trust's extraction settings (see the tenants file
// format in README.md).
type TenantSettings = domain.TenantSettings

// Config configures the intake service.
type Config struct {
	GRPC     grpcserver.Config
	EventLog eventlog.Config

	// MLLPAddr is where HL7 v2 over MLLP is served.
	MLLPAddr string
	// MLLPTLSCert and MLLPTLSKey make the MLLP listener TLS when both are set.
	MLLPTLSCert, MLLPTLSKey string
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

	// FHIRAddr is where the FHIR R4 REST endpoint is served.
	FHIRAddr string
	// MaxFHIRBytes bounds one FHIR request body (same reasoning; at most
	// 512 KiB).
	MaxFHIRBytes int64
	// FHIRResolveTimeout bounds reading a ServiceRequest from a trust's FHIR
	// server (tenant setting fhir_server), for the referrer of a report that
	// does not carry its order.
	FHIRResolveTimeout time.Duration

	// RedisAddr is the Redis holding the record of accepted messages.
	RedisAddr string
	RedisDB   int
	// OutcomePrefix is the key prefix of those records.
	OutcomePrefix string
	// OutcomeTTL is how long a resend is recognised by its message id.
	OutcomeTTL time.Duration

	// TenantsFile is a YAML or JSON file {tenants: [...]} of per-trust
	// settings; when set it replaces Tenants.
	TenantsFile string
	// Tenants are used when no file is given.
	Tenants []TenantSettings

	// Producer names this replica in the events it appends.
	Producer string
}

// DefaultConfig listens on loopback and knows no trust: a deployment names
// its trusts in a tenants file (setting tenants-file), and Validate fails
// until it does, so that no synthetic trust is ever served by default. The
// demo (cmd/herald) and the tests configure the synthetic trusts.
func DefaultConfig() Config {
	return Config{
		GRPC:            grpcserver.Config{Addr: "127.0.0.1:7001"},
		EventLog:        eventlog.DefaultConfig(),
		MLLPAddr:        "127.0.0.1:2575",
		MaxMessageBytes: 256 << 10,
		MLLPIdleTimeout: 5 * time.Minute,
		HandleTimeout:   30 * time.Second,
		MaxConnections:  1024,
		FHIRAddr:        "127.0.0.1:8001",
		MaxFHIRBytes:    256 << 10,
		// FHIRResolveTimeout stays well inside a sender's usual 30-60 s
		// wait for the answer.
		FHIRResolveTimeout: 5 * time.Second,
		RedisAddr:          "127.0.0.1:6379",
		OutcomePrefix:      "herald:intake:outcome:",
		OutcomeTTL:         30 * 24 * time.Hour,
		Producer:           "intake",
	}
}

// RegisterFlags binds the settings to fs (environment fallback HERALD_...).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.GRPC.Addr, "grpc-addr", c.GRPC.Addr, "gRPC listen address")
	fs.StringVar(&c.GRPC.TLSCertFile, "grpc-tls-cert", c.GRPC.TLSCertFile, "gRPC TLS certificate file")
	fs.StringVar(&c.GRPC.TLSKeyFile, "grpc-tls-key", c.GRPC.TLSKeyFile, "gRPC TLS key file")
	c.EventLog.RegisterFlags(fs)
	fs.StringVar(&c.MLLPAddr, "mllp-addr", c.MLLPAddr, "HL7 v2 MLLP listen address")
	fs.StringVar(&c.MLLPTLSCert, "mllp-tls-cert", c.MLLPTLSCert, "MLLP TLS certificate file (TLS when set with mllp-tls-key)")
	fs.StringVar(&c.MLLPTLSKey, "mllp-tls-key", c.MLLPTLSKey, "MLLP TLS key file")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", c.MaxMessageBytes, "largest HL7 message accepted")
	fs.DurationVar(&c.MLLPIdleTimeout, "mllp-idle-timeout", c.MLLPIdleTimeout, "close an MLLP connection idle this long")
	fs.DurationVar(&c.HandleTimeout, "handle-timeout", c.HandleTimeout, "bound on handling one message (durable append included)")
	fs.IntVar(&c.MaxConnections, "mllp-max-connections", c.MaxConnections, "most concurrent MLLP connections")
	fs.StringVar(&c.FHIRAddr, "fhir-addr", c.FHIRAddr, "FHIR R4 REST listen address")
	fs.Int64Var(&c.MaxFHIRBytes, "max-fhir-bytes", c.MaxFHIRBytes, "largest FHIR request body accepted")
	fs.DurationVar(&c.FHIRResolveTimeout, "fhir-resolve-timeout", c.FHIRResolveTimeout, "bound on reading a ServiceRequest from a trust's FHIR server")
	fs.StringVar(&c.RedisAddr, "redis-addr", c.RedisAddr, "Redis address (record of accepted messages)")
	fs.IntVar(&c.RedisDB, "redis-db", c.RedisDB, "Redis database number")
	fs.StringVar(&c.OutcomePrefix, "outcome-prefix", c.OutcomePrefix, "Redis key prefix of message outcomes")
	fs.DurationVar(&c.OutcomeTTL, "outcome-ttl", c.OutcomeTTL, "how long a resend is recognised")
	fs.StringVar(&c.TenantsFile, "tenants-file", c.TenantsFile, "YAML or JSON file of per-trust settings")
	fs.StringVar(&c.Producer, "producer", c.Producer, "producer name in appended events")
}

// Validate names the setting at fault.
func (c Config) Validate() error {
	var errs []error
	if err := c.GRPC.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.EventLog.Validate(); err != nil {
		errs = append(errs, err)
	}
	req := map[string]string{"mllp-addr": c.MLLPAddr, "fhir-addr": c.FHIRAddr, "redis-addr": c.RedisAddr, "producer": c.Producer, "outcome-prefix": c.OutcomePrefix}
	for name, v := range req {
		if v == "" {
			errs = append(errs, fmt.Errorf("setting %s is required", name))
		}
	}
	if (c.MLLPTLSCert == "") != (c.MLLPTLSKey == "") {
		errs = append(errs, errors.New("settings mllp-tls-cert and mllp-tls-key must be given together"))
	}
	if c.MaxMessageBytes < 1024 || c.MaxMessageBytes > 512<<10 {
		errs = append(errs, fmt.Errorf("setting max-message-bytes must be between 1024 and 524288 (the event must fit a Kafka record), got %d", c.MaxMessageBytes))
	}
	if c.MaxFHIRBytes < 1024 || c.MaxFHIRBytes > 512<<10 {
		errs = append(errs, fmt.Errorf("setting max-fhir-bytes must be between 1024 and 524288 (the event must fit a Kafka record), got %d", c.MaxFHIRBytes))
	}
	for name, d := range map[string]time.Duration{"mllp-idle-timeout": c.MLLPIdleTimeout, "handle-timeout": c.HandleTimeout, "outcome-ttl": c.OutcomeTTL, "fhir-resolve-timeout": c.FHIRResolveTimeout} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("setting %s must be positive, got %v", name, d))
		}
	}
	if c.MaxConnections < 1 {
		errs = append(errs, fmt.Errorf("setting mllp-max-connections must be at least 1, got %d", c.MaxConnections))
	}
	if c.TenantsFile == "" && len(c.Tenants) == 0 {
		errs = append(errs, errors.New("setting tenants-file is required (no tenants configured)"))
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
}

// Service is a running intake service.
type Service struct {
	cfg    Config
	log    *slog.Logger
	grpc   *grpcserver.Server
	mllp   *mllp.Server
	fhirLn net.Listener
	fhir   *http.Server
	writer *eventlog.Writer
	rdb    *redis.Client
	batch  *redisbatch.Batcher
}

// New binds the listeners, ensures the event log topics and connects to
// Kafka and Redis. Redis being down does not stop intake (it is a cache).
func New(ctx context.Context, cfg Config, deps Deps) (s *Service, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	deps.Logger, deps.Clock, deps.Telemetry = servicemain.Defaults("herald-intake", deps.Logger, deps.Clock, deps.Telemetry)
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
	var mllpTLS *tls.Config
	if cfg.MLLPTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.MLLPTLSCert, cfg.MLLPTLSKey)
		if err != nil {
			return nil, fmt.Errorf("load mllp-tls-cert/mllp-tls-key: %w", err)
		}
		mllpTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if err := eventlog.EnsureTopics(ctx, cfg.EventLog, deps.Logger); err != nil {
		return nil, fmt.Errorf("ensure event log topics: %w", err)
	}

	s = &Service{cfg: cfg, log: deps.Logger}
	defer func() {
		if err != nil {
			s.abort()
		}
	}()
	s.writer = eventlog.NewWriter(cfg.EventLog, cfg.Producer, deps.Telemetry)
	s.rdb = redis.NewClient(&redis.Options{Addr: cfg.RedisAddr, DB: cfg.RedisDB, MaxRetries: 1, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	// Concurrent messages' outcome reads and writes share round trips.
	s.batch = redisbatch.New(s.rdb)
	if perr := s.rdb.Ping(ctx).Err(); perr != nil {
		deps.Logger.WarnContext(ctx, "redis unavailable at start; resends are re-appended harmlessly until it returns", "addr", cfg.RedisAddr, "error", perr)
	}
	svc := app.New(app.Options{
		Directory: dir,
		Limits:    domain.DefaultLimits(),
		Appender:  s.writer,
		Outcomes:  outcomes.New(s.batch, cfg.OutcomePrefix, cfg.OutcomeTTL),
		Clock:     deps.Clock,
		Logger:    deps.Logger,
		Telemetry: deps.Telemetry,
		Producer:  cfg.Producer,
		IDs:       eventlog.ID,
	})

	if s.grpc, err = grpcserver.New(cfg.GRPC, deps.Logger, deps.Telemetry); err != nil {
		return nil, err
	}
	intakev1.RegisterIntakeServiceServer(s.grpc.GRPC(), grpcapi.New(svc))

	s.mllp, err = mllp.Listen(cfg.MLLPAddr, mllp.ServerConfig{
		MaxFrame:      cfg.MaxMessageBytes,
		IdleTimeout:   cfg.MLLPIdleTimeout,
		WriteTimeout:  10 * time.Second,
		HandleTimeout: cfg.HandleTimeout,
		MaxConns:      cfg.MaxConnections,
		TLS:           mllpTLS,
	}, hl7in.New(svc, deps.Clock), deps.Logger)
	if err != nil {
		return nil, err
	}

	if s.fhirLn, err = net.Listen("tcp", cfg.FHIRAddr); err != nil {
		return nil, fmt.Errorf("listen fhir %s: %w", cfg.FHIRAddr, err)
	}
	s.fhir = &http.Server{
		Handler:           fhirapi.New(svc, cfg.MaxFHIRBytes, cfg.FHIRResolveTimeout, deps.Logger),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
	return s, nil
}

// Addrs returns the bound addresses: "grpc", "mllp" and "fhir".
func (s *Service) Addrs() map[string]string {
	return map[string]string{"grpc": s.grpc.Addr(), "mllp": s.mllp.Addr(), "fhir": s.fhirLn.Addr().String()}
}

// Run serves until ctx is done, then stops the listeners (letting in-flight
// messages finish and be acknowledged) and closes the clients, in reverse
// order of start-up.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	wg.Go(func() { errs[0] = s.grpc.Serve(ctx); cancel() })
	wg.Go(func() { errs[1] = s.mllp.Serve(ctx); cancel() })
	wg.Go(func() {
		if err := s.fhir.Serve(s.fhirLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs[2] = fmt.Errorf("serve fhir: %w", err)
		}
		cancel()
	})
	wg.Go(func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer c()
		_ = s.fhir.Shutdown(sctx)
	})
	s.grpc.SetServing(intakev1.IntakeService_ServiceDesc.ServiceName)
	s.log.InfoContext(ctx, "intake serving", "grpc", s.grpc.Addr(), "mllp", s.mllp.Addr(), "fhir", s.fhirLn.Addr().String())
	wg.Wait()
	s.close()
	return errors.Join(errs...)
}

// abort releases what New bound when a later step of New failed.
func (s *Service) abort() {
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	if s.grpc != nil {
		_ = s.grpc.Serve(stopped)
	}
	if s.mllp != nil {
		_ = s.mllp.Serve(stopped)
	}
	if s.fhirLn != nil {
		_ = s.fhirLn.Close()
	}
	s.close()
}

func (s *Service) close() {
	if s.batch != nil {
		s.batch.Close()
	}
	if s.rdb != nil {
		_ = s.rdb.Close()
	}
	if s.writer != nil {
		_ = s.writer.Close()
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
