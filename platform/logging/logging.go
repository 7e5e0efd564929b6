// Package logging builds the structured JSON logger every service uses. Each
// record carries the service name and, when the context holds a span, its
// trace and span ids, so a log line can be found from a trace and back.
//
// Callers must log only identifiers (alert id, tenant ODS code, category,
// step, channel, outcome, durations): never patient data, report text or
// contact details.
package logging

import (
	"context"
	"io"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// New returns a JSON logger writing to w at level, tagged with service.
func New(w io.Writer, level slog.Level, service string) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(traceHandler{Handler: h}).With(slog.String("service", service))
}

// Discard returns a logger that drops everything.
func Discard() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}

// ParseLevel turns debug, info, warn or error into a slog.Level.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

// traceHandler adds trace_id and span_id from the record's context.
type traceHandler struct {
	slog.Handler
}

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{Handler: h.Handler.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{Handler: h.Handler.WithGroup(name)}
}
