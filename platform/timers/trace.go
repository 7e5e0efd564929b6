package timers

import (
	"context"
	"encoding/json"
	"fmt"

	"go.opentelemetry.io/otel/propagation"
)

// envelope is the payload written by WithTrace: the W3C trace context of
// the arming request plus the caller's bytes. JSON keeps it readable with
// redis-cli; Data is base64 in it.
type envelope struct {
	V     int               `json:"v"`
	Trace map[string]string `json:"trace,omitempty"`
	Data  []byte            `json:"data,omitempty"`
}

const envelopeVersion = 1

// WithTrace wraps data in a payload that also carries the trace context of
// ctx (traceparent, tracestate, as prop injects them), so the handler that
// fires the timer can continue the trace of the request that armed it.
// Use it for Timer.Payload and read it back with FromTrace.
func WithTrace(ctx context.Context, prop propagation.TextMapPropagator, data []byte) ([]byte, error) {
	carrier := propagation.MapCarrier{}
	if prop != nil {
		prop.Inject(ctx, carrier)
	}
	b, err := json.Marshal(envelope{V: envelopeVersion, Trace: carrier, Data: data})
	if err != nil {
		return nil, fmt.Errorf("encode timer payload: %w", err)
	}
	return b, nil
}

// FromTrace unwraps a payload written by WithTrace: it returns ctx carrying
// the stored trace context (as a remote parent: start a span from it) and
// the caller's bytes. A payload that is not an envelope is an error
// (ErrInvalid), never a panic.
func FromTrace(ctx context.Context, prop propagation.TextMapPropagator, payload []byte) (context.Context, []byte, error) {
	var e envelope
	if err := json.Unmarshal(payload, &e); err != nil {
		return ctx, nil, fmt.Errorf("%w: timer payload: not a trace envelope: %v", ErrInvalid, err)
	}
	if e.V != envelopeVersion {
		return ctx, nil, fmt.Errorf("%w: timer payload: envelope version %d, want %d", ErrInvalid, e.V, envelopeVersion)
	}
	if prop != nil && len(e.Trace) > 0 {
		ctx = prop.Extract(ctx, propagation.MapCarrier(e.Trace))
	}
	return ctx, e.Data, nil
}
