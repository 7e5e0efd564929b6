// Package grpcserver is the gRPC edge every Herald service shares: health
// (and, in development, reflection) services, receive and stream limits,
// keepalive enforcement, OpenTelemetry instrumentation (health checks left
// out), panic recovery, the one mapping of fault kinds to gRPC codes,
// graceful shutdown, and mutual TLS on both ends of every call: the server
// requires and verifies client certificates, the client (Dial with
// ClientTLS) presents one and verifies the server, both from files that are
// reloaded when they change (platform/mtls). PeerIdentity names the caller
// for authorization.
package grpcserver

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/mtls"
	"github.com/herald-health/herald/platform/telemetry"
)

// Config is where and how the server listens. Its flags (RegisterFlags)
// are the same in every service.
type Config struct {
	// Addr is host:port; port 0 picks a free one (see Server.Addr).
	Addr string
	// HealthAddr, when set, serves the health service alone in plaintext
	// on a second listener: for the kubelet's gRPC probes, which cannot
	// present a client certificate. It exposes nothing but SERVING or not.
	HealthAddr string
	// TLSCertFile and TLSKeyFile are the service's certificate and key:
	// served to its clients and presented when it calls other Herald
	// services (Dial with ClientTLS). TLS when both are set.
	TLSCertFile string
	TLSKeyFile  string
	// ClientCAFile is the CA bundle of the service mesh: every client must
	// present a certificate that chains to it (mutual TLS), and the
	// services this one calls are verified against it.
	ClientCAFile string
	// ShutdownGrace bounds graceful stop before in-flight calls are cut.
	ShutdownGrace time.Duration
	// MaxRecvBytes bounds one request message (default DefaultMaxRecvBytes):
	// each service sets what its largest request needs.
	MaxRecvBytes int
	// MaxConcurrentStreams bounds the calls in flight on one connection
	// (default DefaultMaxConcurrentStreams).
	MaxConcurrentStreams uint32
	// Reflection serves the reflection API (grpcurl's service listing).
	// Services turn it on in the development profile only: it maps the
	// API for anyone who can connect.
	Reflection bool
}

// Defaults of the server's limits.
const (
	DefaultMaxRecvBytes         = 1 << 20
	DefaultMaxConcurrentStreams = 256
	// MinClientPing is the most often a client may ping an idle
	// connection; a client that pings more often is disconnected
	// (keepalive enforcement: pings are a cheap flood).
	MinClientPing = 10 * time.Second
	// MaxConnectionIdle closes a connection without calls for this long.
	MaxConnectionIdle = 15 * time.Minute
)

// RegisterFlags binds the server's settings to fs: grpc-addr,
// grpc-tls-cert, grpc-tls-key and grpc-client-ca (environment fallback
// HERALD_GRPC_...). The values already in c are the defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "grpc-addr", c.Addr, "gRPC listen address")
	fs.StringVar(&c.HealthAddr, "grpc-health-addr", c.HealthAddr, "plaintext listen address of the gRPC health service alone, for probes that cannot present a certificate (empty: none)")
	fs.StringVar(&c.TLSCertFile, "grpc-tls-cert", c.TLSCertFile, "the service's TLS certificate chain (PEM): served on gRPC and presented to the services it calls; reloaded when the file changes")
	fs.StringVar(&c.TLSKeyFile, "grpc-tls-key", c.TLSKeyFile, "the key of grpc-tls-cert (PEM)")
	fs.StringVar(&c.ClientCAFile, "grpc-client-ca", c.ClientCAFile, "CA bundle (PEM) of the service mesh: clients must present a certificate it signed, and called services are verified against it; reloaded when the file changes")
}

// Validate names the setting at fault.
func (c Config) Validate() error {
	if c.Addr == "" {
		return errors.New("setting grpc-addr is required")
	}
	if err := c.TLSFiles().Validate("grpc-tls-cert", "grpc-tls-key"); err != nil {
		return err
	}
	if c.ClientCAFile != "" && c.TLSCertFile == "" {
		return errors.New("setting grpc-client-ca needs grpc-tls-cert and grpc-tls-key")
	}
	if c.MaxRecvBytes < 0 {
		return fmt.Errorf("gRPC receive limit must not be negative, got %d", c.MaxRecvBytes)
	}
	return nil
}

// TLSFiles returns the service's TLS files as mtls names them.
func (c Config) TLSFiles() mtls.Files {
	return mtls.Files{CertFile: c.TLSCertFile, KeyFile: c.TLSKeyFile, CAFile: c.ClientCAFile}
}

// Plaintext says why this server would not be encrypted and authenticated,
// naming the settings that fix it, or returns "" when it is (see
// servicemain.Security).
func (c Config) Plaintext() string {
	switch {
	case c.TLSCertFile == "":
		return "gRPC server on " + c.Addr + " is plaintext (set grpc-tls-cert, grpc-tls-key and grpc-client-ca)"
	case c.ClientCAFile == "":
		return "gRPC server on " + c.Addr + " does not authenticate its clients (set grpc-client-ca)"
	}
	return ""
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
	// probe serves the health service alone on hlis (nil: none).
	probe *grpc.Server
	hlis  net.Listener
	tls   *mtls.Source
	log   *slog.Logger
	grace time.Duration

	closeOnce sync.Once
	closeErr  error
}

// Option changes how New builds a server.
type Option func(*serverOptions)

type serverOptions struct {
	tls    *mtls.Source
	unary  []grpc.UnaryServerInterceptor
	stream []grpc.StreamServerInterceptor
}

// WithInterceptors adds interceptors that run, in the order given, after
// Herald's own (panic recovery, error mapping) and before the handler:
// authentication first, then authorization. Options apply in order, so
// several WithInterceptors chain.
func WithInterceptors(unary []grpc.UnaryServerInterceptor, stream []grpc.StreamServerInterceptor) Option {
	return func(o *serverOptions) {
		o.unary = append(o.unary, unary...)
		o.stream = append(o.stream, stream...)
	}
}

// StreamWithContext returns ss with ctx as its context, for a stream
// interceptor that hands the handler a context it derived (the verified
// caller, for instance).
func StreamWithContext(ctx context.Context, ss grpc.ServerStream) grpc.ServerStream {
	return &contextStream{ServerStream: ss, ctx: ctx}
}

type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }

// WithTLS serves with src instead of a Source loaded from cfg's files, so
// that one Source (one identity, reloaded once) serves the gRPC server,
// the clients of other services and the service's other listeners.
func WithTLS(src *mtls.Source) Option {
	return func(o *serverOptions) { o.tls = src }
}

// New listens on cfg.Addr at once (so the address is known before Serve)
// and builds the server. Register services on GRPC() before Serve. With
// TLS files (or WithTLS) the server presents the service's certificate
// and, with a CA bundle, requires and verifies client certificates
// (PeerIdentity then names the caller); both are re-read when the files
// change. The listener is the caller's to release with Close (Serve
// releases it too) even when nothing is ever served.
func New(cfg Config, logger *slog.Logger, tel *telemetry.Telemetry, options ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var o serverOptions
	for _, opt := range options {
		opt(&o)
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
		grpc.ChainUnaryInterceptor(append([]grpc.UnaryServerInterceptor{unaryRecover(logger), unaryErrors(logger)}, o.unary...)...),
		grpc.ChainStreamInterceptor(append([]grpc.StreamServerInterceptor{streamRecover(logger), streamErrors(logger)}, o.stream...)...),
		// Calls run on long-lived workers (a new goroutine only when all are
		// busy), so a call's stack has grown already instead of growing by
		// copying in every call.
		grpc.NumStreamWorkers(streamWorkers),
		grpc.MaxRecvMsgSize(cmp.Or(cfg.MaxRecvBytes, DefaultMaxRecvBytes)),
		grpc.MaxConcurrentStreams(cmp.Or(cfg.MaxConcurrentStreams, DefaultMaxConcurrentStreams)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: MinClientPing, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: MaxConnectionIdle, Time: 2 * time.Minute, Timeout: 20 * time.Second}),
	}
	src := o.tls
	if src == nil && cfg.TLSCertFile != "" {
		var err error
		if src, err = mtls.Load(cfg.TLSFiles(), mtls.Options{Logger: logger}); err != nil {
			return nil, fmt.Errorf("gRPC server TLS (settings grpc-tls-cert, grpc-tls-key, grpc-client-ca): %w", err)
		}
	}
	if src != nil {
		if !src.HasCertificate() {
			return nil, errors.New("gRPC server TLS: the TLS source has no certificate (setting grpc-tls-cert)")
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(src.ServerConfig())))
	}
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen for gRPC on %s: %w", cfg.Addr, err)
	}
	g := grpc.NewServer(opts...)
	h := health.NewServer()
	healthpb.RegisterHealthServer(g, h)
	if cfg.Reflection {
		reflection.Register(g)
	}
	grace := cfg.ShutdownGrace
	if grace <= 0 {
		grace = 10 * time.Second
	}
	s := &Server{grpc: g, health: h, lis: lis, tls: src, log: logger, grace: grace}
	if cfg.HealthAddr != "" {
		if s.hlis, err = net.Listen("tcp", cfg.HealthAddr); err != nil {
			_ = lis.Close()
			return nil, fmt.Errorf("listen for gRPC health probes on %s (setting grpc-health-addr): %w", cfg.HealthAddr, err)
		}
		s.probe = grpc.NewServer(grpc.MaxRecvMsgSize(4<<10), grpc.MaxConcurrentStreams(16))
		healthpb.RegisterHealthServer(s.probe, h)
	}
	return s, nil
}

// GRPC returns the server to register services on.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// HealthAddr returns the address of the plaintext health listener ("" when
// there is none).
func (s *Server) HealthAddr() string {
	if s.hlis == nil {
		return ""
	}
	return s.hlis.Addr().String()
}

// TLS returns the server's TLS source (nil when plaintext): the identity
// the service presents when it calls other services (ClientTLS).
func (s *Server) TLS() *mtls.Source { return s.tls }

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
// period. It returns nil after a requested stop, and at once (nil) when
// the server was closed before.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(s.lis) }()
	if s.probe != nil {
		go func() { _ = s.probe.Serve(s.hlis) }()
	}
	select {
	case err := <-errc:
		if errors.Is(err, grpc.ErrServerStopped) {
			return nil
		}
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
	<-errc
	return s.Close(context.WithoutCancel(ctx))
}

// Close stops the server at once (cutting calls in flight) and releases
// its listener, whether or not it was ever served. It is idempotent; after
// a graceful stop by Serve it only makes sure the port is free. Its
// signature fits servicemain.Lifecycle.OnStop.
func (s *Server) Close(context.Context) error {
	s.closeOnce.Do(func() {
		s.health.Shutdown()
		s.grpc.Stop()
		if s.probe != nil {
			s.probe.Stop()
			if err := s.hlis.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				s.closeErr = fmt.Errorf("close gRPC health listener %s: %w", s.hlis.Addr(), err)
			}
		}
		if err := s.lis.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.closeErr = fmt.Errorf("close gRPC listener %s: %w", s.lis.Addr(), err)
		}
	})
	return s.closeErr
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
		// An unexpected error's text names what failed inside the service
		// (a Redis or Kafka address, a key): the caller gets the code and
		// a fixed message, the log gets the error (see the interceptors).
		return status.Error(codes.Internal, InternalMessage)
	}
	return status.Error(code, err.Error())
}

// InternalMessage is the text of every Internal status a handler's
// unexpected error becomes.
const InternalMessage = "internal error (details are in the service's log)"

func unaryErrors(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		return resp, statusLogged(ctx, log, info.FullMethod, err)
	}
}

func streamErrors(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return statusLogged(ss.Context(), log, info.FullMethod, handler(srv, ss))
	}
}

// statusLogged is Status, logging the error an Internal status hides.
func statusLogged(ctx context.Context, log *slog.Logger, method string, err error) error {
	st := Status(err)
	if err != nil && status.Code(st) == codes.Internal && st != err {
		log.ErrorContext(ctx, "gRPC call failed", "method", method, "error", err.Error())
	}
	return st
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
