package servicemain

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/freeport"
	"github.com/herald-health/herald/platform/telemetry"
)

func service(run func(context.Context) error, validate func() error, addr *string) Service {
	return Service{
		Name:     "probe",
		Flags:    func(fs *flag.FlagSet) { fs.StringVar(addr, "grpc-addr", "127.0.0.1:1", "") },
		Validate: validate,
		Run: func(ctx context.Context, logger *slog.Logger, tel *telemetry.Telemetry) error {
			if logger == nil || tel == nil {
				return errors.New("no logger or telemetry")
			}
			return run(ctx)
		},
	}
}

func TestExitCodes(t *testing.T) {
	var addr string
	ok := func(context.Context) error { return nil }
	cases := []struct {
		name     string
		args     []string
		run      func(context.Context) error
		validate func() error
		want     int
		stderr   string
	}{
		{"clean stop", []string{"-metrics-addr="}, ok, nil, 0, ""},
		{"help", []string{"-h"}, ok, nil, 0, "grpc-addr"},
		{"unknown flag", []string{"-nope"}, ok, nil, 2, "nope"},
		{"bad log level", []string{"-log-level=loud", "-metrics-addr="}, ok, nil, 2, "log-level"},
		{"invalid setting", []string{"-metrics-addr="}, ok, func() error { return errors.New("setting redis-addr is required") }, 2, "redis-addr"},
		{"service error", []string{"-metrics-addr="}, func(context.Context) error { return errors.New("kafka unreachable") }, nil, 1, "kafka unreachable"},
		{"profiling on the network", []string{"-metrics-addr=", "-pprof-addr=0.0.0.0:6060"}, ok, nil, 2, "pprof-addr"},
		{"profiling on all interfaces", []string{"-metrics-addr=", "-pprof-addr=:6060"}, ok, nil, 2, "loopback"},
		{"OTLP endpoint without port", []string{"-metrics-addr=", "-otlp-endpoint=collector"}, ok, nil, 2, "otlp-endpoint"},
		{"OTLP CA that does not load", []string{"-metrics-addr=", "-otlp-endpoint=collector:4317", "-otlp-tls-ca=/nonexistent/ca.crt"}, ok, nil, 2, "otlp-tls-ca"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stderr bytes.Buffer
			got := Main(c.args, &stderr, service(c.run, c.validate, &addr))
			if got != c.want {
				t.Fatalf("exit code: got %d, want %d; stderr:\n%s", got, c.want, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.stderr) {
				t.Fatalf("stderr: got %q, want it to mention %q", stderr.String(), c.stderr)
			}
		})
	}
}

func TestEnvironmentFallback(t *testing.T) {
	t.Setenv("HERALD_GRPC_ADDR", "127.0.0.1:7001")
	var addr string
	code := Main([]string{"-metrics-addr="}, &bytes.Buffer{}, service(func(context.Context) error { return nil }, nil, &addr))
	if code != 0 || addr != "127.0.0.1:7001" {
		t.Fatalf("got exit %d, grpc-addr %q; want 0 and the environment's address", code, addr)
	}
}

func TestDefaultsFillOnlyWhatIsUnset(t *testing.T) {
	logger, clk, tel := Defaults("probe", nil, nil, nil)
	if logger == nil || clk == nil || tel == nil || tel.Propagator == nil {
		t.Fatalf("defaults left something unset: %v %v %v", logger, clk, tel)
	}
	given := slog.New(slog.DiscardHandler)
	sim := clock.NewSimulated(time.Unix(0, 0))
	nop := telemetry.Nop("given")
	l2, c2, t2 := Defaults("probe", given, sim, nop)
	if l2 != given || c2 != sim || t2 != nop {
		t.Fatal("defaults replaced a dependency the composer gave")
	}
}

func TestProfilingEndpointOnlyWhenAsked(t *testing.T) {
	pprofAddr, err := freeport.Addr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	var addr string
	fetch := func() (int, error) {
		resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/")
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	var status int
	var fetchErr error
	code := Main([]string{"-metrics-addr=", "-pprof-addr=" + pprofAddr}, &bytes.Buffer{}, service(func(context.Context) error {
		status, fetchErr = fetch()
		return nil
	}, nil, &addr))
	if code != 0 || fetchErr != nil || status != http.StatusOK {
		t.Fatalf("with -pprof-addr: exit %d, GET /debug/pprof/ status %d, error %v; want 0, 200, nil", code, status, fetchErr)
	}
	code = Main([]string{"-metrics-addr="}, &bytes.Buffer{}, service(func(context.Context) error {
		status, fetchErr = fetch()
		return nil
	}, nil, &addr))
	if code != 0 || fetchErr == nil {
		t.Fatalf("without -pprof-addr: exit %d, GET /debug/pprof/ status %d; want no listener", code, status)
	}
}

func TestGCPercentDefaultsUnlessGOGCIsSet(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	var addr string
	noop := service(func(context.Context) error { return nil }, nil, &addr)

	t.Setenv("GOGC", "150") // registers the restore of the variable
	debug.SetGCPercent(150)
	Main([]string{"-metrics-addr="}, &bytes.Buffer{}, noop)
	if got := debug.SetGCPercent(150); got != 150 {
		t.Fatalf("with GOGC=150 set: GC percent %d, want the operator's 150 kept", got)
	}

	if err := os.Unsetenv("GOGC"); err != nil {
		t.Fatal(err)
	}
	Main([]string{"-metrics-addr="}, &bytes.Buffer{}, noop)
	if got := debug.SetGCPercent(100); got != GCPercent {
		t.Fatalf("without GOGC: GC percent %d, want %d", got, GCPercent)
	}
}

// A stop asked by a signal is logged when it is asked ("stopping", with the
// signal) and when it is done ("stopped"), so a clean stop reads as one.
func TestSignalledStopIsLogged(t *testing.T) {
	var addr string
	var stderr bytes.Buffer
	code := Main([]string{"-metrics-addr="}, &stderr, service(func(ctx context.Context) error {
		// The handler is in place once Run is called.
		if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}, nil, &addr))
	if code != 0 {
		t.Fatalf("exit code: got %d, want 0; stderr:\n%s", code, stderr.String())
	}
	var stopping, stopped bool
	for _, line := range strings.Split(stderr.String(), "\n") {
		stopping = stopping || strings.Contains(line, `"msg":"probe stopping"`) && strings.Contains(line, `"signal":"terminated"`)
		stopped = stopped || strings.Contains(line, `"msg":"probe stopped"`)
	}
	if !stopping || !stopped {
		t.Fatalf("logs do not show the stop asked (%v) and done (%v):\n%s", stopping, stopped, stderr.String())
	}
}

// A composing binary is told the shell's settings before its own Validate
// runs, so it can refuse them there and build its services' loggers and
// telemetry from them.
func TestShellSettingsReachTheComposerBeforeValidate(t *testing.T) {
	var got ShellSettings
	var seenInValidate string
	s := Service{
		Name:     "composer",
		Flags:    func(*flag.FlagSet) {},
		Shell:    func(sh ShellSettings) { got = sh },
		Validate: func() error { seenInValidate = got.Telemetry.OTLPEndpoint; return nil },
		Run:      func(context.Context, *slog.Logger, *telemetry.Telemetry) error { return nil },
	}
	var stderr bytes.Buffer
	code := Main([]string{"-log-level=debug", "-otlp-endpoint=127.0.0.1:4317", "-metrics-addr="}, &stderr, s)
	if code != 0 {
		t.Fatalf("exit %d, want 0: %s", code, stderr.String())
	}
	if got.LogLevel != slog.LevelDebug || got.Telemetry.OTLPEndpoint != "127.0.0.1:4317" || got.Telemetry.ServiceName != "herald-composer" {
		t.Fatalf("got %+v, want level debug, the OTLP endpoint and the service name", got)
	}
	if seenInValidate != "127.0.0.1:4317" {
		t.Fatalf("Validate saw endpoint %q: the shell settings came after it", seenInValidate)
	}
}
