// Command heraldctl is Herald's operator CLI: raise alerts from flags or
// HL7/FHIR files, list and show alerts with their timelines, acknowledge,
// decline or record actions, follow the event log, rebuild timers, and
// validate or evaluate escalation policies. Run `heraldctl help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/herald-health/herald/cmd/internal/ctl"
)

func main() { os.Exit(run()) }

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return ctl.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
}
