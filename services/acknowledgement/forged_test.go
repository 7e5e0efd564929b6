package acknowledgement_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/eventsign"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
)

// Forged events (#20 item 7): with event keys, an AlertAcknowledged
// appended straight to the log, signed by notification (which may not
// acknowledge) or unsigned, is dead-lettered with the reason and never
// applied: the alert stays routed, its timer armed; the acknowledgement
// the service records itself (signed by acknowledgement) is applied.
func TestForgedAlertAcknowledgedIsDeadLetteredAndNotApplied(t *testing.T) {
	e := newEnv(t)
	keys, err := eventsign.GenerateFiles(t.TempDir())
	require.NoError(t, err)
	e.cfg.Log.VerifyKeysFile = keys.KeySetFile
	e.cfg.Log.SigningKeyFile = keys.PrivateKeyFiles[eventsign.ServiceAcknowledgement]
	writer := func(service string) *eventlog.Writer {
		c := e.cfg.Log
		c.SigningKeyFile = keys.PrivateKeyFiles[service]
		w := eventlog.NewWriter(c, service, telemetry.Nop("test"))
		t.Cleanup(func() { _ = w.Close() })
		return w
	}
	r := e.start("r1", app.Hooks{})
	ctx := context.Background()
	id := newAlertID("forged-ack")
	require.NoError(t, writer(eventsign.ServiceIntake).Append(ctx, raisedEvent(id)))
	require.NoError(t, writer(eventsign.ServiceRules).Append(ctx, routedEvent(id, nil, time.Hour)))
	e.waitState(r.client, id, ackv1.State_STATE_ROUTED, 30*time.Second)

	forged := func(n string) *eventsv1.Event {
		return &eventsv1.Event{EventId: eventlog.ID(id, "forged", n), AlertId: id, Tenant: "RZZ", Producer: "acknowledgement/forged",
			Payload: &eventsv1.Event_AlertAcknowledged{AlertAcknowledged: &eventsv1.AlertAcknowledged{
				Actor: &eventsv1.Actor{PersonId: "dr-forger", Role: "consultant"}, Via: "app"}}}
	}
	require.NoError(t, writer(eventsign.ServiceNotification).Append(ctx, forged("wrong-producer")))
	require.NoError(t, e.writer.Append(ctx, forged("unsigned"))) // the env's writer has no key

	// Both forgeries share the alert's key: wait for both reasons.
	var reasons string
	require.Eventually(t, func() bool {
		reasons = strings.Join(testinfra.DeadLetterReasons(t, e.cfg.Log.Brokers, e.cfg.Log.DLQTopic, eventlog.HeaderDLQReason)[id], "\n")
		return strings.Contains(reasons, "notification signed AlertAcknowledged, which only [acknowledgement] may produce") &&
			strings.Contains(reasons, "unsigned record")
	}, 45*time.Second, 200*time.Millisecond, "dead letters of the alert: %s", reasons)
	testinfra.WaitCommitted(t, e.cfg.Log.Brokers, e.cfg.Log.EventsTopic, 30*time.Second, e.cfg.GroupID)
	got, err := r.client.GetAlert(ctx, &ackv1.GetAlertRequest{AlertId: id})
	require.NoError(t, err)
	require.Equal(t, ackv1.State_STATE_ROUTED, got.GetState().GetState(), "a forged acknowledgement was applied")
	require.Empty(t, got.GetState().GetAcknowledgedBy().GetPersonId())

	// The service's own acknowledgement, signed by it, is applied.
	a, err := r.client.Acknowledge(ctx, &ackv1.AcknowledgeRequest{AlertId: id, RequestId: "ack-1"}, e.as("dr-a"))
	require.NoError(t, err)
	require.Equal(t, ackv1.State_STATE_ACKNOWLEDGED, a.GetState().GetState())
	require.Equal(t, "dr-a", e.waitState(r.client, id, ackv1.State_STATE_ACKNOWLEDGED, 30*time.Second).GetState().GetAcknowledgedBy().GetPersonId())
}
