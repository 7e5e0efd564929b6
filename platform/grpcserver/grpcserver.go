// Package grpcserver is the gRPC edge every Herald service shares: health
// and reflection services, OpenTelemetry instrumentation (health checks left
// out), panic recovery, the one mapping of fault kinds to gRPC codes,
// graceful shutdown and optional TLS or mutual TLS.
package grpcserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/telemetry"
)

// Config is where and how the server listens.
type Config struct {
	// Addr is host:port; port 0 picks a free one (see Server.Addr).
	Addr string
	// TLSCertFile and TLSKeyFile enable TLS when both are set.
	TLSCertFile string
	TLSKeyFile  string
	// ClientCAFile additionally requires client certificates signed by it (mTLS).
	ClientCAFile string
	// ShutdownGrace bounds graceful stop before in-flight calls are cut.
	ShutdownGrace time.Duration
}

// Validate names the setting at fault.
func (c Config) Validate() error {
	if c.Addr == "" {
		return errors.New("setting grpc-addr is required")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("settings grpc-tls-cert and grpc-tls-key must be given together")
	}
	if c.ClientCAFile != "" && c.TLSCertFile == "" {
		return errors.New("setting grpc-client-ca needs grpc-tls-cert and grpc-tls-key")
	}
	return nil
}

// streamWorkers is how many goroutines serve calls before a call gets a
// goroutine of its own: about the calls in flight at 1,000 alerts/s, when
// each waits some milliseconds for Kafka or Redis.
const streamWorkers = 32

// Server is a gRPC server with Herald's standard services and interceptors.
type Server struct {
	grpc   *grpc.Server
	health *health.Server
	lis    net.Listener
	log    *slog.Logger
	grace  time.Duration
}

// New listens on cfg.Addr at once (so the address is known before Serve)
// and builds the server. Register services on GRPC() before Serve.
func New(cfg Config, logger *slog.Logger, tel *telemetry.Telemetry) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := []grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(tel.TracerProvider),
			otelgrpc.WithMeterProvider(tel.MeterProvider),
			otelgrpc.WithPropagators(tel.Propagator),
			otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool {
				return !strings.HasPrefix(info.FullMethodName, "/grpc.health.v1.Health/")
			}),
		)),
		grpc.ChainUnaryInterceptor(unaryRecover(logger), unaryErrors),
		grpc.ChainStreamInterceptor(streamRecover(logger), streamErrors),
		// Calls run on long-lived workers (a new goroutine only when all are
		// busy), so a call's stack has grown already instead of growing by
		// copying in every call.
		grpc.NumStreamWorkers(streamWorkers),
	}
	if cfg.TLSCertFile != "" {
		creds, err := serverTLS(cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(creds))
	}
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen for gRPC on %s: %w", cfg.Addr, err)
	}
	g := grpc.NewServer(opts...)
	h := health.NewServer()
	healthpb.RegisterHealthServer(g, h)
	reflection.Register(g)
	grace := cfg.ShutdownGrace
	if grace <= 0 {
		grace = 10 * time.Second
	}
	return &Server{grpc: g, health: h, lis: lis, log: logger, grace: grace}, nil
}

func serverTLS(cfg Config) (credentials.TransportCredentials, error) {
	cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("load gRPC TLS key pair %s: %w", cfg.TLSCertFile, err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("read gRPC client CA %s: %w", cfg.ClientCAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("gRPC client CA %s holds no PEM certificate", cfg.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return credentials.NewTLS(tc), nil
}

// GRPC returns the server to register services on.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// SetServing marks a service (and the server as a whole, "") as serving.
func (s *Server) SetServing(service string) {
	s.health.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
}

// SetNotServing marks the server as not serving (readiness lost).
func (s *Server) SetNotServing() {
	s.health.Shutdown()
}

// Serve serves until ctx is done, then stops gracefully within the grace
// period. It returns nil after a requested stop.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(s.lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve gRPC on %s: %w", s.Addr(), err)
	case <-ctx.Done():
	}
	s.health.Shutdown()
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.grace):
		s.grpc.Stop()
	}
	return nil
}

// Dial connects to a Herald gRPC service on target (insecure transport, for
// loopback and in-cluster use behind a mesh), with trace propagation. Calls
// are spread round-robin over every address the target resolves to (a
// Kubernetes headless Service: "dns:///rules-headless:9090").
func Dial(_ context.Context, target string, tel *telemetry.Telemetry) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(
			otelgrpc.WithTracerProvider(tel.TracerProvider),
			otelgrpc.WithMeterProvider(tel.MeterProvider),
			otelgrpc.WithPropagators(tel.Propagator),
		)),
	)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	return conn, nil
}

// Status maps an error to a gRPC status: fault kinds to their codes (with
// field violations for invalid arguments), context errors to Canceled and
// DeadlineExceeded, errors that already carry a status unchanged, and
// anything else to Internal. It is the one place this mapping is made.
func Status(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var code codes.Code
	switch {
	case errors.Is(err, fault.ErrInvalid):
		st := status.New(codes.InvalidArgument, err.Error())
		if vs := fault.Violations(err); len(vs) > 0 {
			br := &errdetails.BadRequest{}
			for _, v := range vs {
				br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Problem})
			}
			if withDetails, derr := st.WithDetails(br); derr == nil {
				st = withDetails
			}
		}
		return st.Err()
	case errors.Is(err, fault.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, fault.ErrFailedPrecondition):
		code = codes.FailedPrecondition
	case errors.Is(err, fault.ErrAlreadyExists):
		code = codes.AlreadyExists
	case errors.Is(err, fault.ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, fault.ErrPermissionDenied):
		code = codes.PermissionDenied
	case errors.Is(err, fault.ErrUnauthenticated):
		code = codes.Unauthenticated
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	default:
		code = codes.Internal
	}
	return status.Error(code, err.Error())
}

func unaryErrors(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	return resp, Status(err)
}

func streamErrors(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return Status(handler(srv, ss))
}

func unaryRecover(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.ErrorContext(ctx, "panic in gRPC handler", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "internal error in %s", info.FullMethod)
			}
		}()
		return handler(ctx, req)
	}
}

func streamRecover(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				log.ErrorContext(ss.Context(), "panic in gRPC stream handler", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "internal error in %s", info.FullMethod)
			}
		}()
		return handler(srv, ss)
	}
}
