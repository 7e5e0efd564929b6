package rules_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/eventsign"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// Forged events (#20 item 7): with event keys, rules routes an AlertRaised
// signed by intake (and signs its AlertRouted as rules), and dead-letters
// with the reason an unsigned AlertRaised and one signed by a service that
// may not raise alerts, routing neither.
func TestForgedAlertRaisedIsDeadLetteredAndNotRouted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	keys, err := eventsign.GenerateFiles(t.TempDir())
	require.NoError(t, err)
	e.cfg.Log.VerifyKeysFile = keys.KeySetFile // routedOf verifies too: rules' AlertRouted must be signed by rules
	cfg := e.cfg
	cfg.Log.SigningKeyFile = keys.PrivateKeyFiles[eventsign.ServiceRules]
	e.start(t, cfg)
	writer := func(service string) *eventlog.Writer {
		c := e.cfg.Log
		c.SigningKeyFile = keys.PrivateKeyFiles[service]
		w := eventlog.NewWriter(c, service, telemetry.Nop("test"))
		t.Cleanup(func() { _ = w.Close() })
		return w
	}
	raise := func(alert string) *eventsv1.Event {
		return cause(alert, "raised-"+alert, "RZZ", time.Now(), &eventsv1.AlertRaised{Details: details(eventsv1.Category_CATEGORY_CRITICAL, time.Now())})
	}
	good, unsigned, wrong := eventlog.ID("RZZ", "forge", "good"), eventlog.ID("RZZ", "forge", "unsigned"), eventlog.ID("RZZ", "forge", "wrong")
	require.NoError(t, e.w.Append(ctx, raise(unsigned))) // the env's writer has no key
	forged := raise(wrong)
	forged.Producer = "notification"
	require.NoError(t, writer(eventsign.ServiceNotification).Append(ctx, forged))
	require.NoError(t, writer(eventsign.ServiceIntake).Append(ctx, raise(good)))

	e.waitRouted(t, good, 1)
	reasons := testinfra.DeadLetters(t, e.cfg.Log.Brokers, e.cfg.Log.DLQTopic, eventlog.HeaderDLQReason, 45*time.Second, unsigned, wrong)
	require.Contains(t, reasons[unsigned], "unsigned record")
	require.Contains(t, reasons[wrong], "notification signed AlertRaised, which only [intake] may produce")
	unverified := e.cfg.Log
	unverified.VerifyKeysFile = ""
	for _, id := range []string{unsigned, wrong} {
		e2 := *e
		e2.cfg.Log = unverified
		require.Empty(t, e2.routedOf(t, id), "a forged AlertRaised was routed")
	}
	require.Contains(t, e.logs.String(), "record refused: not applied")
}
