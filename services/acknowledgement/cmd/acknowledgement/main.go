// Command acknowledgement runs Herald's acknowledgement service.
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
	"github.com/herald-health/herald/services/acknowledgement"
)

func main() { os.Exit(run()) }

func run() int {
	fs := flag.NewFlagSet("acknowledgement", flag.ContinueOnError)
	cfg := acknowledgement.DefaultConfig()
	cfg.RegisterFlags(fs)
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	tcfg := telemetry.Config{ServiceName: acknowledgement.ServiceName}
	fs.StringVar(&tcfg.OTLPEndpoint, "otlp-endpoint", "", "OTLP/gRPC collector host:port")
	fs.StringVar(&tcfg.MetricsAddr, "metrics-addr", "127.0.0.1:9463", "Prometheus /metrics listen address")
	if err := config.Parse(fs, os.Args[1:]); err != nil {
		return 2
	}
	lvl, err := logging.ParseLevel(*level)
	if err != nil {
		fmt.Fprintln(os.Stderr, "setting log-level:", err)
		return 2
	}
	logger := logging.New(os.Stderr, lvl, "acknowledgement")
	if err := cfg.Validate(); err != nil {
		logger.Error("configuration", "error", err.Error())
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tel, err := telemetry.Setup(ctx, tcfg)
	if err != nil {
		logger.Error("telemetry", "error", err.Error())
		return 1
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	if err := acknowledgement.Run(ctx, cfg, acknowledgement.Deps{Logger: logger, Telemetry: tel}); err != nil {
		logger.Error("acknowledgement service stopped", "error", err.Error())
		return 1
	}
	return 0
}
