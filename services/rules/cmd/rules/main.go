// Command rules runs Herald's rules service.
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
	"github.com/herald-health/herald/services/rules"
)

func main() { os.Exit(run()) }

func run() int {
	fs := flag.NewFlagSet("rules", flag.ContinueOnError)
	cfg := rules.DefaultConfig()
	cfg.RegisterFlags(fs)
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	demo := fs.Bool("demo-bundles", false, "load the built-in demo bundles (trusts RZZ and RZY) when bundle-dir is empty")
	tcfg := telemetry.Config{ServiceName: rules.ServiceName}
	fs.StringVar(&tcfg.OTLPEndpoint, "otlp-endpoint", "", "OTLP/gRPC collector host:port")
	fs.StringVar(&tcfg.MetricsAddr, "metrics-addr", "127.0.0.1:9462", "Prometheus /metrics listen address")
	if err := config.Parse(fs, os.Args[1:]); err != nil {
		return 2
	}
	lvl, err := logging.ParseLevel(*level)
	if err != nil {
		fmt.Fprintln(os.Stderr, "setting log-level:", err)
		return 2
	}
	if *demo && cfg.BundleDir == "" {
		cfg.BundleFS = rules.DemoBundles()
	}
	logger := logging.New(os.Stderr, lvl, "rules")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tel, err := telemetry.Setup(ctx, tcfg)
	if err != nil {
		logger.Error("telemetry", "error", err.Error())
		return 1
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	if err := rules.Run(ctx, cfg, rules.Deps{Logger: logger, Telemetry: tel}); err != nil {
		logger.Error("rules service stopped", "error", err.Error())
		return 1
	}
	return 0
}
