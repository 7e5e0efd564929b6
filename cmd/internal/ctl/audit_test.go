package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/eventsign"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	auditv1 "github.com/herald-health/herald/proto/gen/herald/audit/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/audit"
)

// auditFixture writes one alert's life to a fresh event log and its
// commands, chained as the auditor chains them, to fresh audit topics,
// with an anchor of the head.
type auditFixture struct {
	brokers                 string
	events, records, anchor string
	alert                   string
	eventIDs                []string
	recs                    []*auditv1.AuditRecord
}

func newAuditFixture(t *testing.T) *auditFixture { return newAuditFixtureSignedBy(t, nil) }

// newAuditFixtureSignedBy is newAuditFixture with each record signed by
// the key of the service that produces it (keys nil: unsigned, producer
// "test").
func newAuditFixtureSignedBy(t *testing.T, keys *eventsign.Generated) *auditFixture {
	t.Helper()
	cfg := eventlog.DefaultConfig()
	cfg.Brokers = testinfra.KafkaBrokers(t)
	f := &auditFixture{brokers: strings.Join(cfg.Brokers, ","), events: testinfra.NewTopic(t, "events", 3),
		records: testinfra.NewTopic(t, "audit", 1), anchor: testinfra.NewTopic(t, "anchors", 1), alert: "alert-export-1"}
	cfg.EventsTopic = f.events
	writers := map[string]*eventlog.Writer{}
	writerOf := func(service string) *eventlog.Writer {
		if keys == nil {
			service = "test"
		}
		if w := writers[service]; w != nil {
			return w
		}
		c := cfg
		if keys != nil {
			c.SigningKeyFile = keys.PrivateKeyFiles[service]
		}
		w := eventlog.NewWriter(c, service, telemetry.Nop("test"))
		writers[service] = w
		return w
	}
	defer func() {
		for _, w := range writers {
			_ = w.Close()
		}
	}()
	w := writerOf(eventsign.ServiceAcknowledgement)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	at := func(s int) *timestamppb.Timestamp {
		return timestamppb.New(time.Date(2026, 12, 7, 9, 0, s, 0, time.UTC))
	}
	policy := &eventsv1.PolicyRef{PolicyId: "rxf-radiology", Version: "12"}
	recipient := &eventsv1.Recipient{PersonId: "dr-jones", Tenant: "RXF"}
	env := func(id string, s int) *eventsv1.Event {
		return &eventsv1.Event{EventId: id, AlertId: f.alert, Tenant: "RXF", OccurredAt: at(s)}
	}
	raised := env("ev-raised", 0)
	raised.Payload = &eventsv1.Event_AlertRaised{AlertRaised: &eventsv1.AlertRaised{Details: &eventsv1.AlertDetails{
		ReportText: "SECRET-REPORT-TEXT", Patient: &eventsv1.Patient{GivenName: "SECRET-NAME"}}}}
	routed := env("ev-routed", 1)
	routed.Policy = policy
	routed.Payload = &eventsv1.Event_AlertRouted{AlertRouted: &eventsv1.AlertRouted{Category: eventsv1.Category_CATEGORY_CRITICAL,
		Policy: &eventsv1.EscalationPolicy{Ref: policy}}}
	sent := env("ev-sent", 2)
	sent.Payload = &eventsv1.Event_NotificationSent{NotificationSent: &eventsv1.NotificationSent{NotificationId: "n-1", Step: 1,
		Recipient: recipient, Channel: eventsv1.Channel_CHANNEL_EMAIL}}
	delivered := env("ev-delivered", 3)
	delivered.Payload = &eventsv1.Event_NotificationDelivered{NotificationDelivered: &eventsv1.NotificationDelivered{NotificationId: "n-1",
		Channel: eventsv1.Channel_CHANNEL_EMAIL}}
	read := env("ev-read", 4)
	read.Payload = &eventsv1.Event_AlertRead{AlertRead: &eventsv1.AlertRead{Actor: &eventsv1.Actor{PersonId: "dr-jones", Role: "clinician"}}}
	ack := env("ev-ack", 5)
	ack.Policy = policy
	ack.Payload = &eventsv1.Event_AlertAcknowledged{AlertAcknowledged: &eventsv1.AlertAcknowledged{
		Actor: &eventsv1.Actor{PersonId: "dr-jones", Role: "clinician", IdentityProvider: "oidc"}, Step: 1, Via: "link"}}
	all := []*eventsv1.Event{raised, routed, sent, delivered, read, ack}
	producers := []string{eventsign.ServiceIntake, eventsign.ServiceRules, eventsign.ServiceNotification, eventsign.ServiceNotification,
		eventsign.ServiceAcknowledgement, eventsign.ServiceAcknowledgement}
	for i, ev := range all {
		if err := writerOf(producers[i]).Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	// A redelivered duplicate on the log is exported once.
	if err := writerOf(eventsign.ServiceNotification).Append(ctx, proto.Clone(sent).(*eventsv1.Event)); err != nil {
		t.Fatal(err)
	}
	for _, ev := range all {
		f.eventIDs = append(f.eventIDs, ev.GetEventId())
	}
	chain := audit.NewChain("RXF")
	var msgs []kafka.Message
	for _, ev := range all {
		entry, ok := audit.EntryOf(ev)
		if !ok {
			continue
		}
		rec := chain.Next(entry)
		chain.Follow(rec)
		f.recs = append(f.recs, rec)
	}
	// An earlier record of another alert sits in the same chain.
	for _, rec := range f.recs {
		b, _ := proto.Marshal(rec)
		msgs = append(msgs, kafka.Message{Topic: f.records, Key: []byte("RXF"), Value: b})
	}
	anchor := audit.AnchorEvent("RXF", chain.Sequence, chain.Head, "periodic", "acknowledgement/r1", time.Date(2026, 12, 7, 9, 1, 0, 0, time.UTC))
	b, _ := proto.Marshal(anchor)
	msgs = append(msgs, kafka.Message{Topic: f.anchor, Key: []byte("RXF"), Value: b})
	if err := w.PutMany(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *auditFixture) args(sub string, more ...string) []string {
	return append([]string{"audit", sub, "-brokers", f.brokers, "-events-topic", f.events, "-records-topic", f.records, "-anchors-topic", f.anchor}, more...)
}

func TestAuditExportHoldsEveryEventOfTheAlertAndTheChainProof(t *testing.T) {
	f := newAuditFixture(t)
	code, out, errOut := runCtl(f.args("export", f.alert)...)
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, errOut)
	}
	var x Export
	if err := json.Unmarshal([]byte(out), &x); err != nil {
		t.Fatalf("export is not JSON: %v\n%s", err, out)
	}
	var got []string
	for _, e := range x.Events {
		got = append(got, e.EventID)
	}
	if fmt.Sprint(got) != fmt.Sprint(f.eventIDs) {
		t.Fatalf("events: got %v, want %v (every event once, in log order)", got, f.eventIDs)
	}
	if len(x.Proof.Records) != len(f.recs) || !x.Proof.Verified || x.Proof.Anchor == nil || x.Proof.Anchor.Sequence != uint64(len(f.recs)) {
		t.Fatalf("proof: got %d records, verified %v, anchor %+v; want %d records, verified, anchored at %d",
			len(x.Proof.Records), x.Proof.Verified, x.Proof.Anchor, len(f.recs), len(f.recs))
	}
	if x.Events[5].Actor == nil || x.Events[5].Actor.PersonID != "dr-jones" || x.Events[5].AuditSequence != 2 {
		t.Fatalf("the acknowledgement: got actor %+v sequence %d, want dr-jones at sequence 2", x.Events[5].Actor, x.Events[5].AuditSequence)
	}
	if len(x.Deliveries) != 1 || x.Deliveries[0].State != "delivered" || x.Deliveries[0].Recipient != "dr-jones" {
		t.Fatalf("deliveries: got %+v, want n-1 to dr-jones delivered", x.Deliveries)
	}
	if fmt.Sprint(x.PolicyVersions) != "[rxf-radiology v12]" {
		t.Fatalf("policy versions: got %v", x.PolicyVersions)
	}
	if strings.Contains(out, "SECRET") {
		t.Fatal("the export holds patient data")
	}

	page := filepath.Join(t.TempDir(), "alert.html")
	code, _, errOut = runCtl(f.args("export", "-format", "html", "-o", page, f.alert)...)
	if code != 0 {
		t.Fatalf("export html: exit %d: %s", code, errOut)
	}
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	for _, want := range []string{"ev-ack", "dr-jones", "rxf-radiology v12", "delivered", "verified", x.Proof.Records[1].Hash, x.Proof.Anchor.HeadHash} {
		if !strings.Contains(html, want) {
			t.Errorf("the page does not show %q", want)
		}
	}
	if strings.Contains(html, "<script") || strings.Contains(html, "SECRET") || strings.Contains(html, "http://") {
		t.Error("the page must be self-contained, without scripts or patient data")
	}
}

func TestAuditVerifyExitsNonZeroNamingTheTamperedSequence(t *testing.T) {
	f := newAuditFixture(t)
	code, out, errOut := runCtl(f.args("verify")...)
	if code != 0 || !strings.Contains(out, "verified") {
		t.Fatalf("intact trail: exit %d, %s %s", code, out, errOut)
	}
	// Modify record 1 on the stream: append a forged copy at its sequence.
	forged := proto.Clone(f.recs[0]).(*auditv1.AuditRecord)
	forged.Actor.PersonId = "dr-forger"
	forged.Hash = audit.Hash(forged)
	cfg := eventlog.DefaultConfig()
	cfg.Brokers = strings.Split(f.brokers, ",")
	w := eventlog.NewWriter(cfg, "tamperer", telemetry.Nop("t"))
	defer w.Close()
	b, _ := proto.Marshal(forged)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.Put(ctx, f.records, "RXF", b); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCtl(f.args("verify", "-trust", "RXF")...)
	if code != 1 || !strings.Contains(out, "sequence 1: inserted") || !strings.Contains(errOut, "sequence 1") {
		t.Fatalf("tampered trail: got exit %d, %q %q; want 1 naming sequence 1", code, out, errOut)
	}
	code, _, errOut = runCtl(f.args("anchor")...)
	if code != 1 || !strings.Contains(errOut, "not anchored") {
		t.Fatalf("anchor of a tampered trail: got %d %q, want a refusal", code, errOut)
	}
}

// TestAuditVerifyAndExportNameForgedRecords: with the key set
// (HERALD_CTL_EVENT_VERIFY_KEYS_FILE), `heraldctl audit verify` reports a
// record appended to the chain's tail by another principal (hashes right,
// not signed by acknowledgement) as forged and exits 1, which the hashes
// alone cannot; and `audit export` leaves a forged event of the alert out
// of the evidential record, names it, and does not call the proof
// verified.
func TestAuditVerifyAndExportNameForgedRecords(t *testing.T) {
	keys, err := eventsign.GenerateFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := newAuditFixtureSignedBy(t, &keys)
	t.Setenv("HERALD_CTL_EVENT_VERIFY_KEYS_FILE", keys.KeySetFile)
	code, out, errOut := runCtl(f.args("verify")...)
	if code != 0 || !strings.Contains(out, "verified") {
		t.Fatalf("intact signed trail: exit %d, %s %s", code, out, errOut)
	}

	cfg := eventlog.DefaultConfig()
	cfg.Brokers = strings.Split(f.brokers, ",")
	cfg.EventsTopic = f.events
	w := eventlog.NewWriter(cfg, "acknowledgement/mallory", telemetry.Nop("t")) // unsigned
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	chain := audit.NewChain("RXF")
	for _, r := range f.recs {
		chain.Follow(r)
	}
	tail := chain.Next(&auditv1.AuditRecord{Trust: "RXF", AlertId: f.alert, EventId: "ev-forged-close", EventType: "AlertClosed",
		Actor: &auditv1.AuditActor{PersonId: "dr-forger"}, OccurredAt: timestamppb.Now()})
	b, _ := proto.Marshal(tail)
	if err := w.Put(ctx, f.records, "RXF", b); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HERALD_CTL_EVENT_VERIFY_KEYS_FILE", "")
	if c, _, _ := runCtl(f.args("verify", "-trust", "RXF")...); c != 0 {
		t.Fatalf("without the key set the forged tail passes (exit %d): this test no longer shows what signing adds", c)
	}
	t.Setenv("HERALD_CTL_EVENT_VERIFY_KEYS_FILE", keys.KeySetFile)
	code, out, errOut = runCtl(f.args("verify", "-trust", "RXF")...)
	if code != 1 || !strings.Contains(out, fmt.Sprintf("sequence %d: forged", tail.GetSequence())) || !strings.Contains(out, "unsigned record") {
		t.Fatalf("forged tail: got exit %d, %q %q; want 1 naming sequence %d as forged", code, out, errOut, tail.GetSequence())
	}

	// A forged acknowledgement of the alert on the event log.
	fake := &eventsv1.Event{EventId: "ev-forged-ack", AlertId: f.alert, Tenant: "RXF", OccurredAt: timestamppb.Now(),
		Payload: &eventsv1.Event_AlertAcknowledged{AlertAcknowledged: &eventsv1.AlertAcknowledged{
			Actor: &eventsv1.Actor{PersonId: "dr-forger", Role: "clinician"}, Step: 1, Via: "link"}}}
	if err := w.Append(ctx, fake); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCtl(f.args("export", f.alert)...)
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, errOut)
	}
	var x Export
	if err := json.Unmarshal([]byte(out), &x); err != nil {
		t.Fatalf("export is not JSON: %v\n%s", err, out)
	}
	for _, e := range x.Events {
		if e.EventID == "ev-forged-ack" {
			t.Fatal("the forged acknowledgement is in the evidential record")
		}
	}
	problems := strings.Join(x.Proof.Problems, "\n")
	if x.Proof.Verified || !strings.Contains(problems, "ev-forged-ack") || !strings.Contains(problems, "forged") {
		t.Fatalf("proof: verified %v, problems %q; want not verified, naming ev-forged-ack as forged", x.Proof.Verified, problems)
	}
}
