// Command console runs Herald's web console: the pages where clinicians,
// fail-safe officers and safety leads work. Flags fall back to
// HERALD_<FLAG> environment variables.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"

	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/services/console"
)

func main() { os.Exit(run()) }

func run() int {
	cfg := console.DefaultConfig()
	return servicemain.Main(os.Args[1:], os.Stderr, servicemain.Service{
		Name:        "console",
		MetricsAddr: "127.0.0.1:9465",
		Flags:       func(fs *flag.FlagSet) { cfg.RegisterFlags(fs) },
		Validate:    func() error { return cfg.Validate() },
		Run: func(ctx context.Context, logger *slog.Logger, tel *telemetry.Telemetry) error {
			return console.Run(ctx, cfg, console.Deps{Logger: logger, Telemetry: tel})
		},
	})
}
