// Package servicemain is the shell every Herald service shares.
//
// Main is the body of every main, so each main stays a few lines: flags
// with the HERALD_ environment fallback, the JSON logger, OpenTelemetry
// (OTLP over TLS), the loopback-only profiling endpoint, signal handling
// and the exit code.
//
// Lifecycle is the shape of every composition root: resources register
// their release as they are acquired (OnStop), a failed New rolls back what
// it acquired (Rollback), the service's long-running parts are named tasks
// (Go) of which the first to fail stops the rest (Run), and Stop releases
// everything once, in reverse order.
//
// Security is the transport policy (-profile, -insecure): every hop a
// service configures (grpcserver.Config, grpcserver client credentials,
// eventlog.Config, redisconn.Config) reports whether it is plaintext, and
// Check refuses plaintext unless a development system asked for it.
//
// Exit codes: 0 after a requested stop (SIGINT, SIGTERM) or -help; 2 for a
// bad setting (the message names it); 1 when the service stopped on an
// error.
package servicemain

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/telemetry"
)

// Service describes one service binary.
type Service struct {
	// Name is the short name ("intake"); logs carry it and the telemetry
	// service name is "herald-" + Name.
	Name string
	// MetricsAddr is the default Prometheus listen address ("" for none).
	MetricsAddr string
	// Flags binds the service's own settings.
	Flags func(fs *flag.FlagSet)
	// Validate checks the settings once parsed; its error names the setting.
	Validate func() error
	// Run runs the service until ctx ends (the service's own Run).
	Run func(ctx context.Context, logger *slog.Logger, tel *telemetry.Telemetry) error
	// Shell, when set, is given the shell's own settings once they are
	// parsed and valid, before Validate: a binary that composes several
	// services (cmd/herald) makes each one's logger and telemetry from
	// them, so it binds no log-level or otlp-* setting of its own.
	Shell func(ShellSettings)
}

// ShellSettings are the settings Main binds for every binary.
type ShellSettings struct {
	// LogLevel is -log-level.
	LogLevel slog.Level
	// Telemetry is -otlp-endpoint, -otlp-tls-* and -metrics-addr, under
	// the binary's service name.
	Telemetry telemetry.Config
}

// Main parses args, sets up logging and telemetry, runs the service until
// SIGINT or SIGTERM and returns the process's exit code.
func Main(args []string, stderr io.Writer, s Service) int {
	fs := flag.NewFlagSet(s.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	s.Flags(fs)
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	tcfg := telemetry.Config{ServiceName: "herald-" + s.Name}
	fs.StringVar(&tcfg.OTLPEndpoint, "otlp-endpoint", "", "OTLP/gRPC collector host:port for traces (empty: no export); TLS unless it is on loopback with no otlp-tls-ca")
	fs.StringVar(&tcfg.OTLPCAFile, "otlp-tls-ca", "", "CA bundle (PEM) verifying the OTLP collector (empty: the system's roots)")
	fs.StringVar(&tcfg.OTLPCertFile, "otlp-tls-cert", "", "client certificate (PEM) for an OTLP collector that asks for one")
	fs.StringVar(&tcfg.OTLPKeyFile, "otlp-tls-key", "", "key of otlp-tls-cert (PEM)")
	fs.StringVar(&tcfg.MetricsAddr, "metrics-addr", s.MetricsAddr, "Prometheus /metrics listen address (empty: none)")
	pprofAddr := fs.String("pprof-addr", "", "Go profiling (net/http/pprof) listen address, for diagnosis only; loopback only, e.g. 127.0.0.1:6060 (empty: none)")
	if err := config.Parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "%s: %v\n", s.Name, err)
		return 2
	}
	lvl, err := logging.ParseLevel(*level)
	if err != nil {
		fmt.Fprintf(stderr, "%s: setting log-level: %v\n", s.Name, err)
		return 2
	}
	if err := tcfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", s.Name, err)
		return 2
	}
	if err := validateProfiling(*pprofAddr); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", s.Name, err)
		return 2
	}
	if s.Shell != nil {
		s.Shell(ShellSettings{LogLevel: lvl, Telemetry: tcfg})
	}
	if s.Validate != nil {
		if err := s.Validate(); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", s.Name, err)
			return 2
		}
	}
	logger := logging.New(stderr, lvl, s.Name)
	tuneGC()
	ctx, stopAsked, release := stopOnSignal(logger, s.Name)
	defer release()
	// What the shell acquires is released in reverse order however Main
	// returns: the profiling endpoint, then telemetry (flushing spans).
	life := NewLifecycle(logger)
	defer func() {
		if err := life.Stop(context.WithoutCancel(ctx)); err != nil {
			logger.Warn("release on exit", "error", err.Error())
		}
	}()
	tel, err := telemetry.Setup(ctx, tcfg)
	if err != nil {
		logger.Error("telemetry set-up", "error", err.Error())
		return 1
	}
	life.OnStop("telemetry", tel.Shutdown)
	if *pprofAddr != "" {
		stopProfiling, err := serveProfiling(*pprofAddr)
		if err != nil {
			logger.Error("profiling endpoint", "error", err.Error())
			return 1
		}
		life.OnStop("profiling endpoint", stopProfiling)
		logger.Info("profiling endpoint listening", "addr", *pprofAddr)
	}
	if err := s.Run(ctx, logger, tel); err != nil {
		logger.Error(s.Name+" stopped", "error", err.Error())
		return 1
	}
	// Operators see every stop: the signal that asked for it ("stopping")
	// and that in-flight work was finished ("stopped").
	if at, asked := stopAsked(); asked {
		logger.Info(s.Name+" stopped", "took_ms", time.Since(at).Milliseconds())
	} else {
		logger.Info(s.Name + " stopped")
	}
	return 0
}

// stopOnSignal returns a context that ends at the first SIGINT or SIGTERM,
// which it logs as "<name> stopping" with the signal, a function that
// reports when that was, and one that releases the signal handler. A second
// signal is no longer caught: it ends the process at once, for an operator
// who will not wait.
func stopOnSignal(logger *slog.Logger, name string) (ctx context.Context, stopAsked func() (time.Time, bool), release func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	asked := make(chan time.Time, 1)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			signal.Stop(sigs)
			asked <- time.Now()
			logger.Info(name+" stopping", "signal", sig.String())
			cancel()
		case <-done:
		}
	}()
	stopAsked = func() (time.Time, bool) {
		select {
		case at := <-asked:
			return at, true
		default:
			return time.Time{}, false
		}
	}
	release = func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
	return ctx, stopAsked, release
}

// GCPercent is the services' garbage-collection target (GOGC) unless the
// GOGC environment variable sets one. Their live heaps are small (tens of
// MiB) and churn fast, so Go's default of 100 spends 5-10% of their CPU
// collecting; 400 cuts that to a quarter for a few tens of MiB more. The
// charts set GOMEMLIMIT from the memory limit, which bounds the heap
// whatever GOGC is.
const GCPercent = 400

func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(GCPercent)
	}
}
