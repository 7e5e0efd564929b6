package auditor_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	auditv1 "github.com/herald-health/herald/proto/gen/herald/audit/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/audit"
	"github.com/herald-health/herald/services/acknowledgement/internal/auditor"
)

// harness is one test's log and audit topics on the real Kafka.
type harness struct {
	t      testing.TB
	log    eventlog.Config
	topics audit.Topics
	group  string
	writer *eventlog.Writer
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	cfg := eventlog.DefaultConfig()
	cfg.Brokers = testinfra.KafkaBrokers(t)
	cfg.EventsTopic = testinfra.UniqueName("events")
	cfg.DLQTopic = cfg.EventsTopic + "-dlq"
	cfg.StateTopic = cfg.EventsTopic + "-state"
	cfg.Partitions = 3
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, eventlog.EnsureTopics(ctx, cfg, nil))
	h := &harness{t: t, log: cfg, group: testinfra.UniqueName("ack"),
		topics: audit.Topics{Records: cfg.EventsTopic + "-audit", Intake: cfg.EventsTopic + "-audit-intake", Anchors: cfg.EventsTopic + "-audit-anchors"}}
	h.writer = eventlog.NewWriter(cfg, "test", telemetry.Nop("test"))
	t.Cleanup(func() { _ = h.writer.Close() })
	return h
}

// start runs an auditor replica until the returned stop is called.
func (h *harness) start(name string, afterAppend func(context.Context, *auditv1.AuditRecord) error) (stop func()) {
	return h.startWith(name, afterAppend, "")
}

func (h *harness) startWith(name string, afterAppend func(context.Context, *auditv1.AuditRecord) error, bundleTopic string) (stop func()) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := eventlog.NewWriter(h.log, name, telemetry.Nop(name))
	a, err := auditor.New(ctx, auditor.Config{Log: h.log, Topics: h.topics, Group: h.group, Producer: name,
		AnchorEvery: time.Hour, AfterAppend: afterAppend, BundleTopic: bundleTopic}, w)
	require.NoError(h.t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
			a.Close()
			_ = w.Close()
		})
	}
	h.t.Cleanup(stop)
	return stop
}

// commands appends n acknowledgements (one per alert) of trust, each after
// an AlertRaised that is not audited, and returns the acknowledgements' ids.
func (h *harness) commands(trust string, n int) []string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ids []string
	for i := range n {
		alert := fmt.Sprintf("%s-alert-%d", trust, i)
		at := timestamppb.New(time.Date(2026, 12, 7, 10, 0, i, 0, time.UTC))
		raised := &eventsv1.Event{EventId: alert + "-raised", AlertId: alert, Tenant: trust, OccurredAt: at,
			Payload: &eventsv1.Event_AlertRaised{AlertRaised: &eventsv1.AlertRaised{Details: &eventsv1.AlertDetails{ReportText: "private"}}}}
		ack := &eventsv1.Event{EventId: alert + "-ack", AlertId: alert, Tenant: trust, OccurredAt: at,
			Policy: &eventsv1.PolicyRef{PolicyId: trust + "-policy", Version: "3"},
			Payload: &eventsv1.Event_AlertAcknowledged{AlertAcknowledged: &eventsv1.AlertAcknowledged{
				Actor: &eventsv1.Actor{PersonId: "dr-" + trust, Role: "clinician", IdentityProvider: "oidc"}, Step: 1, Via: "link"}}}
		require.NoError(h.t, h.writer.Append(ctx, raised, ack))
		ids = append(ids, ack.GetEventId())
	}
	return ids
}

func (h *harness) trail() *audit.Trail {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tr, err := audit.ReadTrail(ctx, h.log, h.topics.Records, h.topics.Anchors)
	require.NoError(h.t, err)
	return tr
}

// waitChained waits until every event id is in the trail.
func (h *harness) waitChained(ids []string) *audit.Trail {
	h.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		tr := h.trail()
		have := map[string]bool{}
		for _, p := range tr.Records {
			have[p.Record.GetEventId()] = true
		}
		missing := 0
		for _, id := range ids {
			if !have[id] {
				missing++
			}
		}
		if missing == 0 {
			return tr
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%d of %d events not chained after 2 minutes", missing, len(ids))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func requireOneChainPerTrust(t *testing.T, tr *audit.Trail, perTrust map[string]int) audit.Report {
	t.Helper()
	rep := tr.Verify("")
	require.True(t, rep.OK(), "verify: %v", rep.Problems)
	got := map[string]int{}
	for _, tr := range rep.Trusts {
		got[tr.Trust] = tr.Records
		require.Equal(t, uint64(tr.Records), tr.Head, "trust %s: head sequence equals its record count", tr.Trust)
	}
	require.Equal(t, perTrust, got, "records per trust")
	return rep
}

func TestTwoReplicasProduceOneChainPerTrust(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start("replica-1", nil)
	h.start("replica-2", nil)
	ids := append(h.commands("RXF", 12), h.commands("RYJ", 9)...)
	tr := h.waitChained(ids)
	requireOneChainPerTrust(t, tr, map[string]int{"RXF": 12, "RYJ": 9})
	for _, p := range tr.Records {
		require.NotContains(t, string(audit.Canonical(p.Record)), "private", "an audit record holds no report text")
		require.Equal(t, "AlertAcknowledged", p.Record.GetEventType(), "only commands are audited")
		require.Equal(t, "3", p.Record.GetPolicyVersion())
	}
}

// TestCrashBetweenAppendAndCommitDoesNotFork kills a replica (its handler
// never returns) right after a record is durably appended and before the
// intake offset is committed; the replica that takes over is handed the
// same entry again and must neither chain it twice nor fork the chain.
func TestCrashBetweenAppendAndCommitDoesNotFork(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var appended atomic.Int32
	crashed := make(chan struct{})
	stopA := h.start("replica-a", func(ctx context.Context, rec *auditv1.AuditRecord) error {
		if appended.Add(1) == 3 {
			close(crashed)
			// The replica dies here: the record is durable, its entry's
			// offset is never committed.
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	ids := h.commands("RXF", 6)
	select {
	case <-crashed:
	case <-time.After(2 * time.Minute):
		t.Fatal("replica a never appended its third record")
	}
	stopA()
	h.start("replica-b", nil)
	tr := h.waitChained(ids)
	rep := requireOneChainPerTrust(t, tr, map[string]int{"RXF": 6})
	require.Equal(t, 0, rep.Trusts[0].Duplicates, "the redelivered entry was found chained and skipped")
}

// TestAnchorsAndTamperingOnKafka builds a chain through the auditor, then
// writes tampered copies of it to fresh topics and verifies each against
// the real anchors.
func TestAnchorsAndTamperingOnKafka(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	stop := h.start("replica-1", nil)
	ids := h.commands("RXF", 6)
	h.waitChained(ids)
	stop() // anchors the heads on the way out
	tr := h.trail()
	require.NotEmpty(t, tr.Anchors, "an anchor was written")
	require.Equal(t, uint64(6), tr.Anchors[len(tr.Anchors)-1].GetSequence())
	require.True(t, tr.Verify("RXF").OK())

	recs := make([]*auditv1.AuditRecord, len(tr.Records))
	for i, p := range tr.Records {
		recs[i] = p.Record
	}
	for _, tc := range []struct {
		name   string
		tamper func([]*auditv1.AuditRecord) []*auditv1.AuditRecord
		kind   audit.Kind
		seq    uint64
	}{
		{"modify", func(r []*auditv1.AuditRecord) []*auditv1.AuditRecord {
			r[1].Actor.PersonId = "dr-forger"
			return r
		}, audit.Modified, 2},
		{"remove", func(r []*auditv1.AuditRecord) []*auditv1.AuditRecord { return append(r[:3:3], r[4:]...) }, audit.Removed, 4},
		{"reorder", func(r []*auditv1.AuditRecord) []*auditv1.AuditRecord {
			r[2], r[3] = r[3], r[2]
			return r
		}, audit.Reordered, 3},
		{"insert", func(r []*auditv1.AuditRecord) []*auditv1.AuditRecord {
			f := proto.Clone(r[4]).(*auditv1.AuditRecord)
			f.EventId = "forged"
			f.Hash = audit.Hash(f)
			return append(r[:5:5], append([]*auditv1.AuditRecord{f}, r[5:]...)...)
		}, audit.Inserted, 5},
		{"truncate after anchor", func(r []*auditv1.AuditRecord) []*auditv1.AuditRecord { return r[:4] }, audit.Truncated, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			copied := make([]*auditv1.AuditRecord, len(recs))
			for i, r := range recs {
				copied[i] = proto.Clone(r).(*auditv1.AuditRecord)
			}
			topic := testinfra.NewTopic(t, "tampered", 1)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var msgs []kafka.Message
			for _, r := range tc.tamper(copied) {
				b, err := proto.Marshal(r)
				require.NoError(t, err)
				msgs = append(msgs, kafka.Message{Topic: topic, Key: []byte(r.GetTrust()), Value: b})
			}
			w := eventlog.NewWriter(h.log, "tamperer", telemetry.Nop("tamperer")) // a fresh writer learns of the new topic
			defer w.Close()
			require.NoError(t, w.PutMany(ctx, msgs...))
			got, err := audit.ReadTrail(ctx, h.log, topic, h.topics.Anchors)
			require.NoError(t, err)
			rep := got.Verify("")
			var found []string
			ok := false
			for _, p := range rep.Problems {
				found = append(found, p.String())
				ok = ok || (p.Kind == tc.kind && p.Sequence == tc.seq)
			}
			require.True(t, ok, "got %v, want %s at sequence %d", found, tc.kind, tc.seq)
		})
	}
}

// TestReadsOfPatientDataAreChainedOnce submits a view of an alert's details
// as the console will, twice (a retried request): it is chained once,
// after the commands, with the viewer.
func TestReadsOfPatientDataAreChainedOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start("replica-1", nil)
	ids := h.commands("RXF", 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	view := audit.ViewedEntry("RXF", "RXF-alert-0", "req-1", "alert-details",
		&auditv1.AuditActor{PersonId: "dr-reader", Issuer: "https://cis2", Subject: "sub-1", Acr: "AAL3", RelayingService: "console"},
		time.Date(2026, 12, 7, 11, 0, 0, 0, time.UTC))
	require.NoError(t, audit.Submit(ctx, h.writer, h.topics.Intake, view))
	require.NoError(t, audit.Submit(ctx, h.writer, h.topics.Intake, view))
	tr := h.waitChained(append(ids, view.GetEventId()))
	requireOneChainPerTrust(t, tr, map[string]int{"RXF": 3})
	var viewed []*auditv1.AuditRecord
	for _, p := range tr.Records {
		if p.Record.GetEventType() == audit.TypeRecordViewed {
			viewed = append(viewed, p.Record)
		}
	}
	require.Len(t, viewed, 1, "a retried view is recorded once")
	require.Equal(t, "dr-reader", viewed[0].GetActor().GetPersonId())
	require.Equal(t, "AAL3", viewed[0].GetActor().GetAcr())
}

// TestPolicyBundleEventsOnRulesTopicAreChained forwards the events of rules'
// bundle topic (an event with a person and a tenant but no alert) into the
// trust's chain.
func TestPolicyBundleEventsOnRulesTopicAreChained(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bundles := testinfra.NewTopic(t, "policy-bundles", 1)
	ev := &eventsv1.Event{EventId: "bundle-proposed-1", Tenant: "RXF", OccurredAt: timestamppb.Now(),
		Payload: &eventsv1.Event_AlertClosed{AlertClosed: &eventsv1.AlertClosed{Actor: &eventsv1.Actor{PersonId: "policy-admin-1"}}}}
	b, err := proto.Marshal(ev)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := eventlog.NewWriter(h.log, "rules", telemetry.Nop("rules")) // a fresh writer learns of the new topic
	defer w.Close()
	require.NoError(t, w.PutMany(ctx, kafka.Message{Topic: bundles, Key: []byte("RXF"), Value: b}))
	h.startWith("replica-1", nil, bundles)
	tr := h.waitChained([]string{"bundle-proposed-1"})
	requireOneChainPerTrust(t, tr, map[string]int{"RXF": 1})
	require.Equal(t, "policy-admin-1", tr.Records[0].Record.GetActor().GetPersonId())
}
