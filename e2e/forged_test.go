package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/e2e/harness"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/eventsign"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// Forged events (#20 item 7). Kafka's ACLs let only Herald's principals
// append; this is the wall behind them. With the production profile on the
// secured Kafka, an AlertAcknowledged is appended straight to the events
// topic by Herald-authenticated principals: as the notification principal,
// signed with notification's own key (a service that may not produce
// acknowledgements, claiming to be acknowledgement), and as the
// acknowledgement principal with no signature (its Kafka password without
// its signing key). Every consumer dead-letters both with the reason, and
// neither is applied: the alert still climbs its steps to the fail-safe
// queue after them.
func TestSecurityForgedEventsAreDeadLetteredAndNotApplied(t *testing.T) {
	b, err := os.ReadFile("testdata/bundle.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sys := harness.StartSystemWith(t, bins, []harness.Bundle{{Tenant: "RZZ", YAML: string(b)}}, harness.Options{
		SecureInfra: true,
		Env:         map[string][]string{"acknowledgement": {"HERALD_DEV_IDENTITY="}},
	})
	send(t, sys, oru("MSG-FORGE-1", "ACC-FORGE-1", "F", "CRITICAL"))
	id := alertIDFromLog(t, sys, 60*time.Second)

	// As a Herald principal, over SASL_SSL, as the services connect.
	as := func(principal, keyFile string) *eventlog.Writer {
		k := testinfra.KafkaSASL(t, principal)
		cfg := sys.Log
		cfg.Brokers, cfg.TLS, cfg.TLSCAFile = k.Addrs, true, k.CAFile
		cfg.SASLUser, cfg.SASLPassword = k.User, k.Password
		cfg.SigningKeyFile, cfg.VerifyKeysFile = keyFile, ""
		w := eventlog.NewWriter(cfg, "acknowledgement/forged", telemetry.Nop("e2e"))
		t.Cleanup(func() { _ = w.Close() })
		return w
	}
	forgedAck := func(n string) *eventsv1.Event {
		return &eventsv1.Event{EventId: eventlog.ID(id, "forged", n), AlertId: id, Tenant: "RZZ", OccurredAt: timestamppb.Now(),
			Producer: "acknowledgement/forged",
			Payload: &eventsv1.Event_AlertAcknowledged{AlertAcknowledged: &eventsv1.AlertAcknowledged{
				Actor: &eventsv1.Actor{PersonId: "e2e-referrer", Role: "clinician"}, Step: 0, Via: "link"}}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := as(testinfra.PrincipalNotification, sys.EventKeys.PrivateKeyFiles[eventsign.ServiceNotification]).Append(ctx, forgedAck("wrong-producer")); err != nil {
		t.Fatalf("the notification principal could not append at all (the ACLs, not the signature, would be refusing): %v", err)
	}
	if err := as(testinfra.PrincipalAcknowledgement, "").Append(ctx, forgedAck("unsigned")); err != nil {
		t.Fatalf("the acknowledgement principal could not append: %v", err)
	}

	// Every consumer group refused both, with the reason.
	harness.Eventually(t, 90*time.Second, func() bool {
		reasons := strings.Join(testinfra.DeadLetterReasons(t, sys.Log.Brokers, sys.Log.DLQTopic, eventlog.HeaderDLQReason)[id], "\n")
		return strings.Count(reasons, "unsigned record") >= 2 && // rules, notification, acknowledgement, the auditor
			strings.Count(reasons, "notification signed AlertAcknowledged, which only [acknowledgement] may produce") >= 2
	}, func() string {
		return "dead letters of the alert: " + strings.Join(testinfra.DeadLetterReasons(t, sys.Log.Brokers, sys.Log.DLQTopic, eventlog.HeaderDLQReason)[id], "\n")
	})

	// Neither was applied: after them in the log, the alert is still
	// escalated to the fail-safe queue, as only an unacknowledged alert is.
	raw := sys.Log
	raw.VerifyKeysFile = "" // read what is there, forgeries included
	harness.Eventually(t, 90*time.Second, func() bool {
		forged, after := int64(-1), false
		rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer rcancel()
		_ = eventlog.ReadTopic(rctx, raw, raw.EventsTopic, func(key, value []byte, _ int, offset int64) error {
			var ev eventsv1.Event
			if string(key) != id || proto.Unmarshal(value, &ev) != nil {
				return nil
			}
			switch {
			case ev.GetAlertAcknowledged() != nil:
				forged = max(forged, offset)
			case ev.GetFailsafeQueued() != nil && forged >= 0 && offset > forged:
				after = true
			}
			return nil
		})
		return after
	}, func() string { return "no FailsafeQueued after the forged acknowledgements: was one applied?" })
	// And the harness, verifying like the services, never sees them.
	for _, ev := range sys.Events(t, id) {
		if ev.GetAlertAcknowledged() != nil {
			t.Errorf("a verifying reader handed the forged acknowledgement %s", ev.GetEventId())
		}
	}
}
