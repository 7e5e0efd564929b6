package acknowledgement_test

import (
	"context"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/telemetry"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	"github.com/herald-health/herald/services/acknowledgement"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
	"github.com/stretchr/testify/require"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestEscalationJoinsTheAlertTrace: the timer carries the trace context it
// was armed under, so the escalation it fires (and the apply of that
// escalation) belong to the alert's trace. No span attribute holds patient
// data.
func TestEscalationJoinsTheAlertTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	e := newEnv(t)
	e.tel = telemetry.New(acknowledgement.ServiceName, tp, metricnoop.NewMeterProvider())
	r := e.start("r1", app.Hooks{})

	ctx, root := tp.Tracer("intake").Start(context.Background(), "intake.raise")
	id := newAlertID("trace")
	e.append(ctx, raisedEvent(id), routedEvent(id, nil, time.Second, time.Hour))
	root.End()
	require.Eventually(t, func() bool {
		st, err := r.client.GetAlert(context.Background(), &ackv1.GetAlertRequest{AlertId: id})
		return err == nil && st.GetState().GetRepeat() == 1
	}, 30*time.Second, 20*time.Millisecond)

	traceID := root.SpanContext().TraceID()
	require.Eventually(t, func() bool {
		timer, applyEscalated := false, false
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID() != traceID {
				continue
			}
			switch s.Name() {
			case "acknowledgement.timer":
				timer = true
			case "acknowledgement.apply":
				for _, a := range s.Attributes() {
					if a.Key == "event.type" && a.Value.AsString() == "AlertEscalated" {
						applyEscalated = true
					}
				}
			}
		}
		return timer && applyEscalated
	}, 10*time.Second, 50*time.Millisecond, "the timer span and the escalation's apply span join the alert's trace")

	for _, s := range rec.Ended() {
		for _, a := range s.Attributes() {
			requireNoPatientData(t, a.Value.String())
		}
	}
}
