// Command intake runs Herald's intake service: HL7 v2 over MLLP, FHIR R4
// REST and gRPC in, alert events out. Flags fall back to HERALD_<FLAG>
// environment variables.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/services/intake"
)

func main() { os.Exit(run()) }

func run() int {
	cfg := intake.DefaultConfig()
	fs := flag.NewFlagSet("intake", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	otlp := fs.String("otlp-endpoint", "", "OTLP/gRPC collector host:port (empty: no export)")
	metrics := fs.String("metrics-addr", "127.0.0.1:9461", "Prometheus /metrics listen address (empty: none)")
	if err := config.Parse(fs, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	level, err := logging.ParseLevel(*logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	logger := logging.New(os.Stderr, level, "intake")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "herald-intake", OTLPEndpoint: *otlp, MetricsAddr: *metrics})
	if err != nil {
		logger.Error("telemetry set-up", "error", err)
		return 1
	}
	defer func() { _ = tel.Shutdown(context.WithoutCancel(ctx)) }()
	if err := intake.Run(ctx, cfg, intake.Deps{Logger: logger, Telemetry: tel}); err != nil {
		logger.Error("intake stopped", "error", err)
		return 1
	}
	return 0
}
