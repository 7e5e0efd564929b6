// Command acknowledgement runs Herald's acknowledgement service: the alert
// lifecycle, its commands and queries, the acknowledge-link pages and the
// SLA timers. Flags fall back to HERALD_<FLAG> environment variables.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"

	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/services/acknowledgement"
)

func main() { os.Exit(run()) }

func run() int {
	cfg := acknowledgement.DefaultConfig()
	return servicemain.Main(os.Args[1:], os.Stderr, servicemain.Service{
		Name:        "acknowledgement",
		MetricsAddr: "127.0.0.1:9463",
		Flags:       func(fs *flag.FlagSet) { cfg.RegisterFlags(fs) },
		Validate:    func() error { return cfg.Validate() },
		Run: func(ctx context.Context, logger *slog.Logger, tel *telemetry.Telemetry) error {
			return acknowledgement.Run(ctx, cfg, acknowledgement.Deps{Logger: logger, Telemetry: tel})
		},
	})
}
