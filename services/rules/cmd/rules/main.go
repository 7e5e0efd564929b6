// Command rules runs Herald's rules service. Flags fall back to
// HERALD_<FLAG> environment variables.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"

	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/services/rules"
)

func main() { os.Exit(run()) }

func run() int {
	cfg := rules.DefaultConfig()
	var demo bool
	return servicemain.Main(os.Args[1:], os.Stderr, servicemain.Service{
		Name:        "rules",
		MetricsAddr: "127.0.0.1:9462",
		Flags: func(fs *flag.FlagSet) {
			cfg.RegisterFlags(fs)
			fs.BoolVar(&demo, "demo-bundles", false, "load the built-in demo bundles (trusts RZZ and RZY) when bundle-dir is empty")
		},
		Validate: func() error {
			if demo && cfg.BundleDir == "" {
				cfg.BundleFS = rules.DemoBundles()
			}
			return cfg.Validate()
		},
		Run: func(ctx context.Context, logger *slog.Logger, tel *telemetry.Telemetry) error {
			return rules.Run(ctx, cfg, rules.Deps{Logger: logger, Telemetry: tel})
		},
	})
}
