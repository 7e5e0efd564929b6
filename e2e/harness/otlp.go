package harness

import (
	"context"
	"net"
	"sync"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// Span is one span received by the trace collector, flattened.
type Span struct {
	Service    string
	Name       string
	TraceID    string
	SpanID     string
	ParentID   string
	Attributes map[string]string
	Events     []SpanEvent
}

// SpanEvent is a span event with its attributes.
type SpanEvent struct {
	Name       string
	Attributes map[string]string
}

// TraceCollector is an in-process OTLP/gRPC trace receiver.
type TraceCollector struct {
	collectortrace.UnimplementedTraceServiceServer
	Addr string

	mu    sync.Mutex
	spans []Span
}

// NewTraceCollector starts the receiver on a free loopback port.
func NewTraceCollector(t testing.TB) *TraceCollector {
	t.Helper()
	c := &TraceCollector{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen for otlp receiver: %v", err)
	}
	c.Addr = l.Addr().String()
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, c)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return c
}

// Export implements the OTLP trace service.
func (c *TraceCollector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := attrs(rs.GetResource().GetAttributes())["service.name"]
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, flatten(service, s))
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// Spans returns a copy of the spans received so far.
func (c *TraceCollector) Spans() []Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Span(nil), c.spans...)
}

func flatten(service string, s *tracepb.Span) Span {
	out := Span{
		Service:    service,
		Name:       s.GetName(),
		TraceID:    hexID(s.GetTraceId()),
		SpanID:     hexID(s.GetSpanId()),
		ParentID:   hexID(s.GetParentSpanId()),
		Attributes: attrs(s.GetAttributes()),
	}
	for _, e := range s.GetEvents() {
		out.Events = append(out.Events, SpanEvent{Name: e.GetName(), Attributes: attrs(e.GetAttributes())})
	}
	return out
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = anyValue(kv.GetValue())
	}
	return m
}

func anyValue(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	default:
		return v.String()
	}
}

func hexID(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, len(b)*2)
	for i, c := range b {
		out[i*2], out[i*2+1] = digits[c>>4], digits[c&0xf]
	}
	return string(out)
}
