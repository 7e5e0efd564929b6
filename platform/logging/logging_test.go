package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestLogCarriesServiceAndTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, 0, "intake")
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))

	log.InfoContext(ctx, "alert accepted", "alert_id", "a1")

	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("log line is not JSON: %v: %s", err, buf.String())
	}
	for k, want := range map[string]string{"service": "intake", "trace_id": tid.String(), "span_id": sid.String(), "alert_id": "a1"} {
		if got := rec[k]; got != want {
			t.Errorf("%s: got %v, want %s", k, got, want)
		}
	}
}

func TestLogWithoutSpanHasNoTraceID(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, 0, "rules").With("x", 1).Info("hello")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if _, ok := rec["trace_id"]; ok {
		t.Fatalf("trace_id present without a span: %v", rec)
	}
}
