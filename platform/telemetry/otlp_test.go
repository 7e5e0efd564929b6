package telemetry_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/herald-health/herald/platform/devca"
	"github.com/herald-health/herald/platform/mtls"
	"github.com/herald-health/herald/platform/telemetry"
)

// receiver is an OTLP/gRPC trace receiver that requires mutual TLS.
type receiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	names []string
}

func (r *receiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.names = append(r.names, s.GetName())
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (r *receiver) spans() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.names...)
}

func startReceiver(t *testing.T, files mtls.Files) (*receiver, string) {
	t.Helper()
	src, err := mtls.Load(files, mtls.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(src.ServerConfig())))
	r := &receiver{}
	collectortrace.RegisterTraceServiceServer(srv, r)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return r, l.Addr().String()
}

// exportOne records one span with a telemetry set up from cfg and flushes
// it within wait, returning the export's error (the exporter retries a
// refused export until wait ends).
func exportOne(t *testing.T, cfg telemetry.Config, name string, wait time.Duration) error {
	t.Helper()
	tel, err := telemetry.Setup(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	defer func() { _ = tel.Shutdown(ctx) }()
	_, span := tel.Tracer().Start(context.Background(), name)
	span.End()
	ctx, cancel = context.WithTimeout(context.Background(), wait)
	defer cancel()
	return tel.TracerProvider.(*sdktrace.TracerProvider).ForceFlush(ctx)
}

func TestOTLPExportsOverMutualTLS(t *testing.T) {
	files, err := devca.WriteDir(t.TempDir(), time.Now(), time.Hour, "otel-collector", "intake")
	if err != nil {
		t.Fatal(err)
	}
	r, addr := startReceiver(t, files["otel-collector"])
	client := files["intake"]
	cfg := telemetry.Config{ServiceName: "herald-intake", OTLPEndpoint: addr, OTLPCAFile: client.CAFile, OTLPCertFile: client.CertFile, OTLPKeyFile: client.KeyFile}
	if err := exportOne(t, cfg, "intake.raise", 10*time.Second); err != nil {
		t.Fatalf("export over mutual TLS: %v", err)
	}
	if got := r.spans(); len(got) != 1 || got[0] != "intake.raise" {
		t.Fatalf("collector received %v, want [intake.raise]", got)
	}

	// Without a client certificate, or in plaintext, the collector refuses
	// the export and nothing arrives.
	noCert := cfg
	noCert.OTLPCertFile, noCert.OTLPKeyFile = "", ""
	plaintext := cfg
	plaintext.OTLPCAFile, plaintext.OTLPCertFile, plaintext.OTLPKeyFile = "", "", ""
	for name, c := range map[string]telemetry.Config{"no client certificate": noCert, "plaintext to loopback": plaintext} {
		if err := exportOne(t, c, "refused", 2*time.Second); err == nil {
			t.Fatalf("%s: export succeeded", name)
		}
	}
	if got := r.spans(); len(got) != 1 {
		t.Fatalf("collector received %v after refused exports, want only the first span", got)
	}
}

func TestOTLPSettingsAreChecked(t *testing.T) {
	cases := []struct {
		cfg  telemetry.Config
		want string
	}{
		{telemetry.Config{ServiceName: "s", OTLPEndpoint: "collector"}, "otlp-endpoint"},
		{telemetry.Config{ServiceName: "s", OTLPCAFile: "ca.crt"}, "need otlp-endpoint"},
		{telemetry.Config{ServiceName: "s", OTLPEndpoint: "collector:4317", OTLPCertFile: "c.crt"}, "otlp-tls-key"},
		{telemetry.Config{ServiceName: "s", OTLPEndpoint: "collector:4317", OTLPCAFile: "/nonexistent/ca.crt"}, "otlp-tls-ca"},
	}
	for _, c := range cases {
		if _, err := telemetry.Setup(context.Background(), c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("Setup(%+v): got %v, want an error mentioning %q", c.cfg, err, c.want)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:6060": true, "[::1]:6060": true, "localhost:6060": true, "127.1.2.3:1": true,
		":6060": false, "0.0.0.0:6060": false, "10.0.0.5:6060": false, "collector:4317": false, "nonsense": false,
	} {
		if got := telemetry.IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
