// Command notification runs Herald's notification service. Flags fall back
// to HERALD_<FLAG> environment variables.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"

	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/services/notification"
)

func main() { os.Exit(run()) }

func run() int {
	cfg := notification.DefaultConfig()
	return servicemain.Main(os.Args[1:], os.Stderr, servicemain.Service{
		Name:        "notification",
		MetricsAddr: "127.0.0.1:9464",
		Flags:       func(fs *flag.FlagSet) { cfg.RegisterFlags(fs) },
		Validate:    func() error { return cfg.Validate() },
		Run: func(ctx context.Context, logger *slog.Logger, tel *telemetry.Telemetry) error {
			return notification.Run(ctx, cfg, notification.Deps{Logger: logger, Telemetry: tel})
		},
	})
}
