// Command notification runs Herald's notification service.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/herald-health/herald/platform/config"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/services/notification"
)

func main() { os.Exit(run()) }

func run() int {
	fs := flag.NewFlagSet("notification", flag.ContinueOnError)
	cfg := notification.DefaultConfig()
	cfg.RegisterFlags(fs)
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	tcfg := telemetry.Config{ServiceName: notification.ServiceName}
	fs.StringVar(&tcfg.OTLPEndpoint, "otlp-endpoint", "", "OTLP/gRPC collector host:port")
	fs.StringVar(&tcfg.MetricsAddr, "metrics-addr", "127.0.0.1:9464", "Prometheus /metrics listen address")
	if err := config.Parse(fs, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	lvl, err := logging.ParseLevel(*level)
	if err != nil {
		fmt.Fprintln(os.Stderr, "setting log-level:", err)
		return 2
	}
	logger := logging.New(os.Stderr, lvl, "notification")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tel, err := telemetry.Setup(ctx, tcfg)
	if err != nil {
		logger.Error("telemetry", "error", err.Error())
		return 1
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	if err := notification.Run(ctx, cfg, notification.Deps{Logger: logger, Telemetry: tel}); err != nil {
		logger.Error("notification service stopped", "error", err.Error())
		return 1
	}
	return 0
}
