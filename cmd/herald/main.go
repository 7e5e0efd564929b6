// Command herald is the all-in-one: Herald's four services in one process
// on an embedded Kafka-protocol broker and Redis, with demo trusts, a
// traffic simulator and a web page. `make run` starts it.
//
// It runs under the same shell as every service binary
// (servicemain.Main): flags with the HERALD_ environment fallback, the
// shell's log-level and otlp-* settings, signal handling and exit codes.
// The shell's own log (start, stop, a failure) goes to stderr; the
// services' logs go to WORK_DIR/services.log at the shell's log level, and
// each service exports traces under its own name.
package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os"

	"github.com/herald-health/herald/cmd/internal/allinone"
	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/platform/telemetry"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	cfg := allinone.DefaultConfig()
	return servicemain.Main(args, stderr, servicemain.Service{
		Name:  "herald",
		Flags: func(fs *flag.FlagSet) { cfg.RegisterFlags(fs) },
		Shell: func(sh servicemain.ShellSettings) {
			cfg.LogLevel, cfg.Telemetry = sh.LogLevel, sh.Telemetry
		},
		Validate: func() error { return cfg.Validate() },
		Run: func(ctx context.Context, _ *slog.Logger, _ *telemetry.Telemetry) error {
			return allinone.Run(ctx, cfg, os.Stdout)
		},
	})
}
