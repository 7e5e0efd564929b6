package servicemain

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/herald-health/herald/platform/telemetry"
)

// validateProfiling refuses a profiling address that is not on loopback:
// the profiles reveal memory contents, including patient data in flight,
// so they are reached through kubectl port-forward, never the network.
func validateProfiling(addr string) error {
	if addr == "" || telemetry.IsLoopback(addr) {
		return nil
	}
	return fmt.Errorf("setting pprof-addr %q must be a loopback address (127.0.0.1:PORT, [::1]:PORT or localhost:PORT): profiles expose memory contents", addr)
}

// serveProfiling serves Go's profiles under /debug/pprof/ on addr, on a
// listener of its own so that the metrics port never exposes them. It
// returns a function that stops the server (a Lifecycle release).
func serveProfiling(addr string) (func(context.Context) error, error) {
	if err := validateProfiling(addr); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for profiling on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return srv.Shutdown(ctx)
	}, nil
}
