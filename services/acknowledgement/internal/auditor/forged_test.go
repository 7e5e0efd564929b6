package auditor_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/eventsign"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	auditv1 "github.com/herald-health/herald/proto/gen/herald/audit/v1"
	"github.com/herald-health/herald/services/acknowledgement/audit"
)

// signedHarness is a harness whose log is signed and verified as in
// production: the auditor replicas and the command writer sign with
// acknowledgement's key; refusals are counted on the returned reader.
func signedHarness(t *testing.T) (*harness, eventsign.Generated, *sdkmetric.ManualReader) {
	t.Helper()
	h := newHarness(t)
	keys, err := eventsign.GenerateFiles(t.TempDir())
	require.NoError(t, err)
	reader := sdkmetric.NewManualReader()
	tel := telemetry.New("test", tracenoop.NewTracerProvider(), sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	h.log = h.log.Observed(slog.New(slog.DiscardHandler), tel)
	h.log.VerifyKeysFile = keys.KeySetFile
	h.log.SigningKeyFile = keys.PrivateKeyFiles[eventsign.ServiceAcknowledgement]
	h.writer = eventlog.NewWriter(h.log, "acknowledgement/test", telemetry.Nop("test"))
	t.Cleanup(func() { _ = h.writer.Close() })
	return h, keys, reader
}

func refusedOn(t *testing.T, r *sdkmetric.ManualReader, path string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "herald_events_refused_total" {
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					if v, ok := dp.Attributes.Value("path"); ok && v.AsString() == path {
						n += dp.Value
					}
				}
			}
		}
	}
	return n
}

// TestForgedAuditRecordsAreRefusedWhereTheyAreRead: with signed events,
// (1) an audit entry put on the intake unsigned, or signed by a service
// that may not write the intake, is dead-lettered with the reason and
// never chained; (2) a record appended to the chain's tail by another
// principal (hashes right, unsigned) is reported as forged by the verifier
// (`heraldctl audit verify` reads through audit.ReadTrail), and the chainer
// does not build on it (the next genuine record takes its sequence); (3) a
// forged anchor is reported, not trusted.
func TestForgedAuditRecordsAreRefusedWhereTheyAreRead(t *testing.T) {
	t.Parallel()
	h, keys, metrics := signedHarness(t)
	h.start("acknowledgement/r1", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	first := h.commands("RZZ", 1)
	tr := h.waitChained(first)
	require.True(t, tr.Verify("").OK(), "the genuine chain verifies: %v", tr.Verify("").Problems)

	// (1) Forged intake entries: unsigned, and signed by notification.
	unsignedCfg := h.log
	unsignedCfg.SigningKeyFile = ""
	unsigned := eventlog.NewWriter(unsignedCfg, "acknowledgement/mallory", telemetry.Nop("test"))
	defer unsigned.Close()
	notifCfg := h.log
	notifCfg.SigningKeyFile = keys.PrivateKeyFiles[eventsign.ServiceNotification]
	notification := eventlog.NewWriter(notifCfg, "notification", telemetry.Nop("test"))
	defer notification.Close()
	forgedEntry := func(id string) *auditv1.AuditRecord {
		return &auditv1.AuditRecord{Trust: "RZZ", AlertId: "RZZ-alert-0", EventId: id, EventType: "AlertClosed",
			Actor: &auditv1.AuditActor{PersonId: "mallory"}, OccurredAt: timestamppb.Now()}
	}
	require.NoError(t, audit.Submit(ctx, unsigned, h.topics.Intake, forgedEntry("forged-unsigned")))
	require.NoError(t, audit.Submit(ctx, notification, h.topics.Intake, forgedEntry("forged-by-notification")))
	// A genuine entry after them: once it is chained, they were handled.
	second := h.commands("RZZ", 2)[1:]
	tr = h.waitChained(second)
	for _, p := range tr.Records {
		require.False(t, strings.HasPrefix(p.Record.GetEventId(), "forged"), "a forged intake entry was chained: %v", p.Record)
	}
	var all string
	require.Eventually(t, func() bool {
		all = strings.Join(testinfra.DeadLetterReasons(t, h.log.Brokers, h.log.DLQTopic, eventlog.HeaderDLQReason)["RZZ"], "|")
		return strings.Count(all, "event signature refused") >= 2
	}, 2*time.Minute, 200*time.Millisecond, "both forged entries dead-lettered")
	require.Contains(t, all, "unsigned record")
	require.Contains(t, all, "notification signed a record of audit-intake, which only [acknowledgement] may write")
	require.GreaterOrEqual(t, refusedOn(t, metrics, eventlog.PathConsume), int64(2))

	// (2) A record appended to the tail by another principal, chained
	// correctly on the real head (what the hashes alone cannot catch).
	rep := tr.Verify("RZZ")
	require.True(t, rep.OK(), "%v", rep.Problems)
	head := audit.NewChain("RZZ")
	for _, p := range tr.Records {
		head.Follow(p.Record)
	}
	fake := head.Next(forgedEntry("forged-tail"))
	b, err := proto.Marshal(fake)
	require.NoError(t, err)
	require.NoError(t, unsigned.Put(ctx, h.topics.Records, "RZZ", b))
	tr = h.trail()
	rep = tr.Verify("RZZ")
	require.False(t, rep.OK(), "a forged record at the tail passes verification")
	require.Len(t, rep.Problems, 1, "%v", rep.Problems)
	require.Equal(t, audit.Forged, rep.Problems[0].Kind)
	require.Equal(t, fake.GetSequence(), rep.Problems[0].Sequence)
	require.Contains(t, rep.Problems[0].Detail, "unsigned record")

	// The chainer does not build on it: the next genuine record takes the
	// sequence the forgery claimed, and its skip is counted.
	third := h.commands("RZZ", 3)[2:]
	tr = h.waitChained(third)
	for _, p := range tr.Records {
		if p.Record.GetEventId() == third[0] {
			require.Equal(t, fake.GetSequence(), p.Record.GetSequence(), "the chainer built on the forged record")
		}
	}
	require.GreaterOrEqual(t, refusedOn(t, metrics, "audit_catch_up"), int64(1))

	// (3) A forged anchor (unsigned) is reported and not trusted.
	anchor := audit.AnchorEvent("RZZ", 99, []byte("not-the-head"), "periodic", "acknowledgement/r1", time.Now())
	ab, err := proto.Marshal(anchor)
	require.NoError(t, err)
	require.NoError(t, unsigned.Put(ctx, h.topics.Anchors, "RZZ", ab))
	rep = h.trail().Verify("RZZ")
	var kinds []string
	for _, p := range rep.Problems {
		kinds = append(kinds, string(p.Kind)+"@"+p.Where)
	}
	require.Len(t, rep.Problems, 2, "the forged record and the forged anchor, nothing else (no truncation to sequence 99): %v", kinds)
	for _, p := range rep.Problems {
		require.Equal(t, audit.Forged, p.Kind, "%v", kinds)
	}
}
