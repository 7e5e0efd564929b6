package notification_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/telemetry"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// The send joins the alert's trace (the parent comes from the record's
// headers through the job), and no span attribute or event carries patient
// data or a contact address.
func TestTraceJoinsAlertAndCarriesNoPatientData(t *testing.T) {
	e := newEnv(t, nil)
	rec := tracetest.NewSpanRecorder()
	e.tel = telemetry.New("notification", sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)), metricnoop.NewMeterProvider())
	id := alertID("trace")
	e.rules.set("referrer:G"+id[:6], person("p-t", cp(chEmail, "trace@nhs.test")))
	_, _ = e.start()

	ctx, root := e.tel.Tracer().Start(context.Background(), "intake")
	w := eventlog.NewWriter(e.cfg.Log, "test", e.tel)
	t.Cleanup(func() { _ = w.Close() })
	require.NoError(t, w.Append(ctx, raisedEvent(id), routedEvent(id, eventsv1.Category_CATEGORY_CRITICAL, step(0, nil, referrer()))))
	root.End()
	e.waitEvents(id, "NotificationSent", 1)

	var job sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == "notification.job" && s.SpanContext().TraceID() == root.SpanContext().TraceID() {
				job = s
				return true
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond, "a notification span in the alert's trace")
	require.NotNil(t, job)
	var all string
	for _, s := range rec.Ended() {
		all += s.Name()
		for _, a := range s.Attributes() {
			all += fmt.Sprintf(" %s=%s", a.Key, a.Value.String())
		}
		for _, ev := range s.Events() {
			all += " " + ev.Name
			for _, a := range ev.Attributes {
				all += fmt.Sprintf(" %s=%s", a.Key, a.Value.String())
			}
		}
		all += "\n"
	}
	requireNoSecrets(t, all, "trace@nhs.test", "https://herald.test/ack/")
}
