// Command herald is the all-in-one: Herald's four services in one process
// on an embedded Kafka-protocol broker and Redis, with demo trusts, a
// traffic simulator and a web page. `make run` starts it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/herald-health/herald/cmd/internal/allinone"
	"github.com/herald-health/herald/platform/config"
)

func main() { os.Exit(run()) }

func run() int {
	fs := flag.NewFlagSet("herald", flag.ContinueOnError)
	cfg := allinone.DefaultConfig()
	cfg.RegisterFlags(fs)
	if err := config.Parse(fs, os.Args[1:]); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := allinone.Run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "herald:", err)
		return 1
	}
	return 0
}
