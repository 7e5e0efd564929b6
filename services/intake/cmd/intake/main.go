// Command intake runs Herald's intake service: HL7 v2 over MLLP, FHIR R4
// REST and gRPC in, alert events out. Flags fall back to HERALD_<FLAG>
// environment variables.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"

	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/services/intake"
)

func main() { os.Exit(run()) }

func run() int {
	cfg := intake.DefaultConfig()
	return servicemain.Main(os.Args[1:], os.Stderr, servicemain.Service{
		Name:        "intake",
		MetricsAddr: "127.0.0.1:9461",
		Flags:       func(fs *flag.FlagSet) { cfg.RegisterFlags(fs) },
		Validate:    func() error { return cfg.Validate() },
		Run: func(ctx context.Context, logger *slog.Logger, tel *telemetry.Telemetry) error {
			return intake.Run(ctx, cfg, intake.Deps{Logger: logger, Telemetry: tel})
		},
	})
}
