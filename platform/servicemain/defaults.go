package servicemain

import (
	"log/slog"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/telemetry"
)

// Defaults returns what a service runs with where its composer left a
// dependency unset: logs discarded, the wall clock, and telemetry that
// records nothing (with a working propagator). Every service's New calls it
// on its Deps.
func Defaults(name string, logger *slog.Logger, clk clock.Clock, tel *telemetry.Telemetry) (*slog.Logger, clock.Clock, *telemetry.Telemetry) {
	if logger == nil {
		logger = logging.Discard()
	}
	if clk == nil {
		clk = clock.Real{}
	}
	if tel == nil {
		tel = telemetry.Nop(name)
	}
	return logger, clk, tel
}
