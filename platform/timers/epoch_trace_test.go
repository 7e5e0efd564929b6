package timers

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

func TestEpochDetectsWipe(t *testing.T) {
	ctx := context.Background()
	for _, shards := range []int{1, 3} {
		s, clk, rdb := newStore(t, func(c *Config) { c.Shards = shards })
		b := replica(t, rdb, clk, s.cfg)

		// given the very first start, then it is reported lost (nothing armed yet)
		e, err := s.CheckEpoch(ctx)
		require.NoError(t, err)
		require.True(t, e.Lost, "first start")
		require.NoError(t, s.Rearmed(ctx, e))
		e, err = s.CheckEpoch(ctx)
		require.NoError(t, err)
		require.False(t, e.Lost, "after re-arm")

		// and a replica starting later adopts the epoch
		eb, err := b.CheckEpoch(ctx)
		require.NoError(t, err)
		require.False(t, eb.Lost)

		// when the test's Redis database is wiped
		require.NoError(t, s.Arm(ctx, Timer{ID: "a", Due: t0}))
		require.NoError(t, rdb.FlushDB(ctx).Err())

		// then the next check reports it, and keeps reporting it until re-armed
		e, err = s.CheckEpoch(ctx)
		require.NoError(t, err)
		require.True(t, e.Lost, "wipe")
		again, err := s.CheckEpoch(ctx)
		require.NoError(t, err)
		require.True(t, again.Lost, "not yet re-armed")
		require.NoError(t, s.Rearmed(ctx, again))
		e, err = s.CheckEpoch(ctx)
		require.NoError(t, err)
		require.False(t, e.Lost)

		// and the other replica, whose key was recreated by s, sees it too
		eb, err = b.CheckEpoch(ctx)
		require.NoError(t, err)
		require.True(t, eb.Lost, "replica b")

		// when Redis is wiped again during b's re-arm, then Rearmed says so
		require.NoError(t, rdb.FlushDB(ctx).Err())
		require.ErrorIs(t, b.Rearmed(ctx, eb), ErrEpochChanged)
		eb, err = b.CheckEpoch(ctx)
		require.NoError(t, err)
		require.True(t, eb.Lost)
		require.NoError(t, b.Rearmed(ctx, eb))
	}
}

func TestTraceContextRoundTripsThroughPayload(t *testing.T) {
	ctx := context.Background()
	s, clk, _ := newStore(t)
	prop := propagation.TraceContext{}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
	})

	// given a timer armed inside a traced request
	armCtx := trace.ContextWithSpanContext(ctx, sc)
	payload, err := WithTrace(armCtx, prop, []byte{0, 1, 2, 0xff})
	require.NoError(t, err)
	require.NoError(t, s.Arm(armCtx, Timer{ID: "a", Due: t0.Add(time.Minute), Payload: payload}))

	// when it fires through a poller
	got := make(chan context.Context, 1)
	data := make(chan []byte, 1)
	p, err := NewPoller(s, PollerConfig{})
	require.NoError(t, err)
	runPoller(t, p, func(ctx context.Context, c Claimed) error {
		fctx, d, err := FromTrace(ctx, prop, c.Payload)
		if err != nil {
			return err
		}
		got <- fctx
		data <- d
		return nil
	})
	var fctx context.Context
	eventually(t, func() bool {
		clk.Advance(time.Second)
		select {
		case fctx = <-got:
			return true
		default:
			return false
		}
	}, "timer did not fire")

	// then the handler continues the arming request's trace, with the bytes intact
	fsc := trace.SpanContextFromContext(fctx)
	require.Equal(t, sc.TraceID(), fsc.TraceID())
	require.Equal(t, sc.SpanID(), fsc.SpanID())
	require.True(t, fsc.IsSampled())
	require.True(t, fsc.IsRemote())
	require.Equal(t, []byte{0, 1, 2, 0xff}, <-data)
}

func TestFromTraceRejectsForeignPayloads(t *testing.T) {
	prop := propagation.TraceContext{}
	tests := []struct {
		name    string
		payload []byte
	}{
		{"empty", nil},
		{"not json", []byte("hello")},
		{"wrong version", []byte(`{"v":2}`)},
		{"bad data", []byte(`{"v":1,"data":"!!"}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := FromTrace(context.Background(), prop, tt.payload)
			require.ErrorIs(t, err, ErrInvalid)
			require.Contains(t, err.Error(), "timer payload")
		})
	}

	// a context without a span round-trips to one without a span
	p, err := WithTrace(context.Background(), prop, []byte("x"))
	require.NoError(t, err)
	ctx, d, err := FromTrace(context.Background(), prop, p)
	require.NoError(t, err)
	require.Equal(t, []byte("x"), d)
	require.False(t, trace.SpanContextFromContext(ctx).IsValid())
}

func FuzzFromTrace(f *testing.F) {
	prop := propagation.TraceContext{}
	p, err := WithTrace(context.Background(), prop, []byte("seed"))
	require.NoError(f, err)
	f.Add(p)
	f.Add([]byte(`{"v":1,"trace":{"traceparent":"00-zz-00-01"}}`))
	f.Add([]byte(`{"v":1,"trace":null,"data":null}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		// Any bytes wrapped with a trace context come back as they were,
		// with that trace context.
		armed := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceFlags: trace.FlagsSampled}))
		wrapped, err := WithTrace(armed, prop, payload)
		require.NoError(t, err)
		fctx, d, err := FromTrace(context.Background(), prop, wrapped)
		require.NoError(t, err)
		require.True(t, bytes.Equal(payload, d), "data %q came back as %q", payload, d)
		requireSameSpan(t, trace.SpanContextFromContext(armed), trace.SpanContextFromContext(fctx))

		// Whatever a payload decodes to (an error is ErrInvalid) re-encodes
		// and decodes to the same bytes and the same trace context.
		ctx, d, err := FromTrace(context.Background(), prop, payload)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalid)
			return
		}
		again, err := WithTrace(ctx, prop, d)
		require.NoError(t, err)
		ctx2, d2, err := FromTrace(context.Background(), prop, again)
		require.NoError(t, err)
		require.True(t, bytes.Equal(d, d2), "data %q came back as %q", d, d2)
		requireSameSpan(t, trace.SpanContextFromContext(ctx), trace.SpanContextFromContext(ctx2))
	})
}

func requireSameSpan(t *testing.T, want, got trace.SpanContext) {
	t.Helper()
	require.Equal(t, want.IsValid(), got.IsValid())
	require.Equal(t, want.TraceID(), got.TraceID())
	require.Equal(t, want.SpanID(), got.SpanID())
	require.Equal(t, want.TraceFlags(), got.TraceFlags())
	require.Equal(t, want.TraceState().String(), got.TraceState().String())
}
