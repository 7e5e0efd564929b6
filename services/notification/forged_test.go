package notification_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/eventsign"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// Forged events (#20 item 7): with event keys, notification messages the
// referrer of an alert routed by rules (signed by rules), and dead-letters
// with the reason an AlertRouted signed by intake (which may not route)
// and an unsigned one: nobody is messaged for them and nothing is recorded.
func TestForgedAlertRoutedIsDeadLetteredAndNobodyIsMessaged(t *testing.T) {
	e := newEnv(t, nil)
	keys, err := eventsign.GenerateFiles(t.TempDir())
	require.NoError(t, err)
	e.cfg.Log.VerifyKeysFile = keys.KeySetFile
	e.cfg.Log.SigningKeyFile = keys.PrivateKeyFiles[eventsign.ServiceNotification]
	writer := func(service string) *eventlog.Writer {
		c := e.cfg.Log
		c.SigningKeyFile = keys.PrivateKeyFiles[service]
		w := eventlog.NewWriter(c, service, telemetry.Nop("test"))
		t.Cleanup(func() { _ = w.Close() })
		return w
	}
	good, wrong, unsigned := alertID("forge-good"), alertID("forge-wrong"), alertID("forge-unsigned")
	for _, id := range []string{good, wrong, unsigned} {
		e.rules.set("referrer:G"+id[:6], person("p-"+id[:6], cp(chEmail, id[:6]+"@nhs.test")))
	}
	e.start()

	intake, rules := writer(eventsign.ServiceIntake), writer(eventsign.ServiceRules)
	ctx := t.Context()
	routed := func(id string) *eventsv1.Event {
		return routedEvent(id, eventsv1.Category_CATEGORY_CRITICAL, step(0, []eventsv1.Channel{chEmail}, referrer()))
	}
	for _, id := range []string{good, wrong, unsigned} {
		require.NoError(t, intake.Append(ctx, raisedEvent(id)))
	}
	require.NoError(t, intake.Append(ctx, routed(wrong))) // intake may not route
	require.NoError(t, e.writer.Append(ctx, routed(unsigned)))
	require.NoError(t, rules.Append(ctx, routed(good)))

	e.waitEvents(good, "NotificationSent", 1)
	require.Len(t, e.smtp.to(good[:6]+"@nhs.test"), 1)
	reasons := testinfra.DeadLetters(t, e.cfg.Log.Brokers, e.cfg.Log.DLQTopic, eventlog.HeaderDLQReason, 45*time.Second, wrong, unsigned)
	require.Contains(t, reasons[wrong], "intake signed AlertRouted, which only [rules] may produce")
	require.Contains(t, reasons[unsigned], "unsigned record")
	e.waitIdle()
	for _, id := range []string{wrong, unsigned} {
		require.Empty(t, e.smtp.to(id[:6]+"@nhs.test"), "a forged AlertRouted was messaged")
		require.Empty(t, e.events(id, "NotificationSent"))
		require.Empty(t, e.events(id, "StepRecipientsResolved"))
	}
}
