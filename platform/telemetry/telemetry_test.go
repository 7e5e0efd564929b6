package telemetry

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestSetupServesPrometheusMetrics(t *testing.T) {
	tel, err := Setup(context.Background(), Config{ServiceName: "herald-test", MetricsAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	c, err := tel.Meter().Int64Counter("herald_test_escalations_total")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 3)

	resp, err := http.Get("http://" + tel.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "herald_test_escalations_total") {
		t.Fatalf("metrics page lacks the counter; got:\n%s", body)
	}
}

func TestSetupRequiresServiceName(t *testing.T) {
	if _, err := Setup(context.Background(), Config{}); err == nil {
		t.Fatal("Setup without a service name: got nil error")
	}
}

func TestNopPropagatesTraceContext(t *testing.T) {
	tel := Nop("x")
	if fields := tel.Propagator.Fields(); !strings.Contains(strings.Join(fields, ","), "traceparent") {
		t.Fatalf("propagator fields: got %v, want traceparent", fields)
	}
}
