// Package telemetry sets up OpenTelemetry for one service without touching
// the otel globals, so several services can run in one process (the
// all-in-one binary, component tests) each with its own service name.
//
// Traces go to an OTLP/gRPC endpoint when one is configured, over TLS
// (verified against OTLPCAFile or the system's roots, with a client
// certificate when one is given, all re-read when the files change); only
// a collector on loopback (a sidecar in the same pod) may be reached in
// plaintext. Metrics are served on a Prometheus endpoint when an address
// is configured. The
// propagator is W3C TraceContext plus Baggage. Span attributes and metric
// labels must hold identifiers only, never patient data.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/herald-health/herald/platform/mtls"
)

// Config says where telemetry goes.
type Config struct {
	// ServiceName is the OpenTelemetry service.name, e.g. "herald-intake".
	ServiceName string
	// OTLPEndpoint is host:port of an OTLP/gRPC collector; empty disables export.
	OTLPEndpoint string
	// OTLPCAFile verifies the collector (empty: the system's roots; a
	// collector on loopback without it is reached in plaintext).
	// OTLPCertFile and OTLPKeyFile are a client certificate for a collector
	// that asks for one.
	OTLPCAFile, OTLPCertFile, OTLPKeyFile string
	// MetricsAddr is where /metrics is served; empty disables the endpoint.
	MetricsAddr string
}

// Telemetry holds one service's providers. The zero value is not usable;
// build it with Setup, Nop or New.
type Telemetry struct {
	ServiceName    string
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Propagator     propagation.TextMapPropagator

	metricsAddr string
	shutdown    []func(context.Context) error
}

// Propagator returns the W3C TraceContext and Baggage propagator.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// Nop returns telemetry that records nothing, with a working propagator.
func Nop(serviceName string) *Telemetry {
	return New(serviceName, tracenoop.NewTracerProvider(), metricnoop.NewMeterProvider())
}

// New wraps given providers (tests pass an sdktrace provider with an
// in-memory recorder).
func New(serviceName string, tp trace.TracerProvider, mp metric.MeterProvider) *Telemetry {
	return &Telemetry{ServiceName: serviceName, TracerProvider: tp, MeterProvider: mp, Propagator: Propagator()}
}

// Validate names the setting at fault: an endpoint that is not host:port,
// or TLS files that do not load.
func (c Config) Validate() error {
	files := mtls.Files{CertFile: c.OTLPCertFile, KeyFile: c.OTLPKeyFile, CAFile: c.OTLPCAFile}
	if err := files.Validate("otlp-tls-cert", "otlp-tls-key"); err != nil {
		return err
	}
	if c.OTLPEndpoint == "" {
		if !files.IsZero() {
			return errors.New("settings otlp-tls-ca, otlp-tls-cert and otlp-tls-key need otlp-endpoint")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(c.OTLPEndpoint); err != nil {
		return fmt.Errorf("setting otlp-endpoint %q: want host:port: %w", c.OTLPEndpoint, err)
	}
	if !files.IsZero() {
		if _, err := mtls.Load(files, mtls.Options{}); err != nil {
			return fmt.Errorf("settings otlp-tls-ca, otlp-tls-cert, otlp-tls-key: %w", err)
		}
	}
	return nil
}

// IsLoopback reports whether addr (host:port) names this host only:
// localhost or a loopback IP. An empty host (all interfaces) is not.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// otlpOption returns how the exporter reaches the collector: TLS unless
// the collector is on loopback and no CA is given.
func (c Config) otlpOption() (otlptracegrpc.Option, error) {
	files := mtls.Files{CertFile: c.OTLPCertFile, KeyFile: c.OTLPKeyFile, CAFile: c.OTLPCAFile}
	if files.IsZero() {
		if IsLoopback(c.OTLPEndpoint) {
			return otlptracegrpc.WithInsecure(), nil
		}
		return otlptracegrpc.WithTLSCredentials(mtls.GRPCClientCredentials(mtls.SystemRoots(), "")), nil
	}
	src, err := mtls.Load(files, mtls.Options{})
	if err != nil {
		return nil, fmt.Errorf("OTLP TLS (settings otlp-tls-ca, otlp-tls-cert, otlp-tls-key): %w", err)
	}
	return otlptracegrpc.WithTLSCredentials(mtls.GRPCClientCredentials(src, "")), nil
}

// Setup builds the providers described by cfg. The OTLP exporter connects
// lazily, so a collector that is down delays nothing; spans are dropped (and
// counted by the SDK) until it is back.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	if cfg.ServiceName == "" {
		return nil, errors.New("telemetry: service name is required")
	}
	res := resource.NewSchemaless(semconv.ServiceName(cfg.ServiceName))
	t := &Telemetry{ServiceName: cfg.ServiceName, Propagator: Propagator()}

	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.OTLPEndpoint != "" {
		transport, err := cfg.otlpOption()
		if err != nil {
			return nil, err
		}
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(cfg.OTLPEndpoint), transport)
		if err != nil {
			return nil, fmt.Errorf("create OTLP exporter for %s: %w", cfg.OTLPEndpoint, err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(200*time.Millisecond)))
		t.TracerProvider = tp
		t.shutdown = append(t.shutdown, tp.Shutdown)
	} else {
		t.TracerProvider = tracenoop.NewTracerProvider()
	}

	if cfg.MetricsAddr != "" {
		reg := prometheus.NewRegistry()
		exp, err := otelprom.New(otelprom.WithRegisterer(reg))
		if err != nil {
			return nil, fmt.Errorf("create prometheus exporter: %w", err)
		}
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(exp))
		t.MeterProvider = mp
		t.shutdown = append(t.shutdown, mp.Shutdown)
		l, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return nil, fmt.Errorf("listen for metrics on %s: %w", cfg.MetricsAddr, err)
		}
		t.metricsAddr = l.Addr().String()
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(l) }()
		t.shutdown = append(t.shutdown, srv.Shutdown)
	} else {
		t.MeterProvider = metricnoop.NewMeterProvider()
	}
	return t, nil
}

// MetricsAddr returns where /metrics is served, or "" when it is not.
func (t *Telemetry) MetricsAddr() string { return t.metricsAddr }

// Tracer returns the service's tracer.
func (t *Telemetry) Tracer() trace.Tracer {
	return t.TracerProvider.Tracer("github.com/herald-health/herald/" + t.ServiceName)
}

// Meter returns the service's meter.
func (t *Telemetry) Meter() metric.Meter {
	return t.MeterProvider.Meter("github.com/herald-health/herald/" + t.ServiceName)
}

// Shutdown flushes spans and stops the metrics endpoint, in reverse order of
// creation.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for i := len(t.shutdown) - 1; i >= 0; i-- {
		errs = append(errs, t.shutdown[i](ctx))
	}
	t.shutdown = nil
	return errors.Join(errs...)
}
