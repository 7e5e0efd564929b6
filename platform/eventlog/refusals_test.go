package eventlog_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"go.yaml.in/yaml/v3"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/eventsign"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
)

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// observed returns cfg observed by a JSON logger into the returned buffer
// and a meter read by the returned reader.
func observed(cfg eventlog.Config) (eventlog.Config, *syncBuffer, *sdkmetric.ManualReader) {
	buf := &syncBuffer{}
	reader := sdkmetric.NewManualReader()
	tel := telemetry.New("test", tracenoop.NewTracerProvider(), sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	return cfg.Observed(slog.New(slog.NewJSONHandler(buf, nil)), tel), buf, reader
}

// refusedCount returns herald_events_refused_total's sum over the points
// whose path is path.
func refusedCount(t *testing.T, r *sdkmetric.ManualReader, path string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "herald_events_refused_total" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if v, ok := dp.Attributes.Value("path"); ok && v.AsString() == path {
					n += dp.Value
				}
			}
		}
	}
	return n
}

// refusalLines returns the log lines of refused records read by path.
func refusalLines(t *testing.T, buf *syncBuffer, path string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		if msg, _ := m["msg"].(string); strings.HasPrefix(msg, "record refused") && m["path"] == path {
			out = append(out, m)
		}
	}
	return out
}

// TestEverySkipOfARefusedRecordIsLoggedAndCounted: the rebuild and
// read-back paths (ReadTopic, Tail, a verifying PartitionReader) skip a
// refused record as before, and now each skip is a log line naming the
// path, the position, the ids and the reason (no content) and a count of
// herald_events_refused_total under its path.
func TestEverySkipOfARefusedRecordIsLoggedAndCounted(t *testing.T) {
	cfg, keys := signedConfig(t, 1)
	cfg, logs, metrics := observed(cfg)
	ctx := context.Background()
	intake := writerAs(t, cfg, "intake", keys.PrivateKeyFiles[eventsign.ServiceIntake])
	unsigned := writerAs(t, cfg, "intake", "")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(intake.Append(ctx, raised("genuine", 0)))
	forged := raised("forged", 0)
	forged.GetAlertRaised().GetDetails().ReportText = "PATIENT-TEXT-MUST-NOT-BE-LOGGED"
	must(unsigned.Append(ctx, forged))

	// A rebuild.
	var read []string
	must(eventlog.ReadTopic(ctx, cfg, cfg.EventsTopic, func(key, _ []byte, _ int, _ int64) error {
		read = append(read, string(key))
		return nil
	}))
	if strings.Join(read, ",") != "genuine" {
		t.Fatalf("ReadTopic handed %v; want only the genuine record", read)
	}
	// Read-your-writes.
	tail := eventlog.NewTail(cfg, testinfra.UniqueName("nobody"))
	defer tail.Close()
	ds, err := tail.Unhandled(ctx, "forged", -1, 1000)
	must(err)
	if len(ds) != 0 {
		t.Fatalf("Tail handed %d forged records", len(ds))
	}
	// A verifying partition reader (the auditor's, heraldctl's).
	pr := eventlog.NewPartitionReader(cfg, cfg.EventsTopic)
	defer pr.Close()
	var told []int64
	must(pr.Verifying(eventlog.ReadOptions{Events: true, Refused: func(_ int, offset int64, _ []byte, _ error) { told = append(told, offset) }}))
	_, end, err := pr.Bounds(ctx, 0)
	must(err)
	n := 0
	must(pr.Read(ctx, 0, 0, end, func(_, _ []byte, _ int, _ int64) error { n++; return nil }))
	if n != 1 || len(told) != 1 || told[0] != 1 {
		t.Fatalf("the verifying partition reader handed %d records and was told of refusals at %v; want 1 and [1]", n, told)
	}

	for _, path := range []string{eventlog.PathReadTopic, eventlog.PathTail, eventlog.PathPartition} {
		if got := refusedCount(t, metrics, path); got != 1 {
			t.Errorf("herald_events_refused_total{path=%q} = %d; want 1", path, got)
		}
		lines := refusalLines(t, logs, path)
		if len(lines) != 1 {
			t.Errorf("%d refusal log lines of path %s; want 1:\n%s", len(lines), path, logs)
			continue
		}
		l := lines[0]
		if l["alert_id"] != "forged" || l["reason"] != "unsigned" || l["topic"] != cfg.EventsTopic || l["offset"] != float64(1) || l["event_type"] != "AlertRaised" {
			t.Errorf("refusal log line of %s = %v; want alert forged, reason unsigned, its topic and offset 1", path, l)
		}
	}
	if strings.Contains(logs.String(), "PATIENT-TEXT") {
		t.Errorf("a refusal log line holds the record's content:\n%s", logs)
	}
}

// writeAtomically replaces path's content as a Secret volume update does
// (a new file renamed over the old), so a reader never sees half of it.
func writeAtomically(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// keySetWith writes the key-set file of entries.
func keySetWith(t *testing.T, path string, entries ...eventsign.KeyEntry) {
	t.Helper()
	b, err := yaml.Marshal(eventsign.KeySetFile{Keys: entries})
	if err != nil {
		t.Fatal(err)
	}
	writeAtomically(t, path, b)
}

// entryOf returns the key-set entry of a private key file.
func entryOf(t *testing.T, service, keyFile string) eventsign.KeyEntry {
	t.Helper()
	s, err := eventsign.LoadSigner(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	pub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	return eventsign.KeyEntry{Service: service, KID: s.KeyID(), PublicKey: pub}
}

// TestKeyRotationUnderTrafficNeedsNoRestart: intake's signing key is
// rotated while it appends and a consumer group verifies, by changing the
// files alone (as a Secret update does): first the new public key joins the
// set, then the new private key replaces the old. Nothing is refused:
// records signed before the rotation still verify while the old public key
// is in the set, and records after it are signed with the new key. Once the
// old key leaves the set, a rebuild refuses the old records, and says so.
func TestKeyRotationUnderTrafficNeedsNoRestart(t *testing.T) {
	cfg, keys := signedConfig(t, 1)
	cfg, logs, metrics := observed(cfg)
	cfg.KeysCheckEvery = 20 * time.Millisecond
	dir := t.TempDir()
	oldKey, newKey := filepath.Join(dir, "intake.key"), strangerKey(t)
	oldPEM, err := os.ReadFile(keys.PrivateKeyFiles[eventsign.ServiceIntake])
	if err != nil {
		t.Fatal(err)
	}
	newPEM, err := os.ReadFile(newKey)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomically(t, oldKey, oldPEM)
	setFile := filepath.Join(dir, "event-keys.yaml")
	oldEntry, newEntry := entryOf(t, eventsign.ServiceIntake, oldKey), entryOf(t, eventsign.ServiceIntake, newKey)
	keySetWith(t, setFile, oldEntry)
	cfg.VerifyKeysFile = setFile
	w := writerAs(t, cfg, "intake", oldKey)
	ctx := context.Background()

	// Traffic: one record after another until told to stop.
	var sent atomic.Int64
	stopTraffic := make(chan struct{})
	trafficDone := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stopTraffic:
				trafficDone <- nil
				return
			default:
			}
			if err := w.Append(ctx, raised("rot", i)); err != nil {
				trafficDone <- err
				return
			}
			sent.Add(1)
		}
	}()
	var handled atomic.Int64
	stop := consume(t, cfg, testinfra.UniqueName("group"), func(context.Context, eventlog.Delivery) error {
		handled.Add(1)
		return nil
	})
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("gave up waiting: %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("records signed with the old key", func() bool { return sent.Load() >= 5 })

	// Rotation, step 1: the new public key joins the set; step 2: the
	// signing key is replaced. Both while the traffic flows.
	keySetWith(t, setFile, oldEntry, newEntry)
	waitFor("the set reloaded", func() bool { return strings.Contains(logs.String(), newEntry.KID) })
	before := sent.Load()
	writeAtomically(t, oldKey, newPEM)
	waitFor("records signed after the rotation", func() bool { return sent.Load() >= before+20 })
	close(stopTraffic)
	if err := <-trafficDone; err != nil {
		t.Fatal(err)
	}
	total := sent.Load()
	waitFor("every record handled", func() bool { return handled.Load() >= total })
	stop()
	if n := refusedCount(t, metrics, eventlog.PathConsume); n != 0 {
		t.Fatalf("%d records refused during the rotation; want none:\n%s", n, logs)
	}

	// Both keys signed: the log holds the old kid first, then the new.
	kids := map[string]int{}
	var order []string
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Brokers, Topic: cfg.EventsTopic, Partition: 0})
	defer r.Close()
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for i := int64(0); i < total; i++ {
		m, err := r.ReadMessage(rctx)
		if err != nil {
			t.Fatal(err)
		}
		kid, _, _ := strings.Cut(string(eventlog.SignatureOf(m.Headers)), ".")
		if len(order) == 0 || order[len(order)-1] != kid {
			order = append(order, kid)
		}
		kids[kid]++
	}
	if len(order) != 2 || order[0] != oldEntry.KID || order[1] != newEntry.KID {
		t.Fatalf("signing keys in log order %v; want the old key %s, then the new %s", order, oldEntry.KID, newEntry.KID)
	}

	// A rebuild while the old public key is in the set reads everything;
	// once it is removed, the old records are refused, logged and counted.
	count := func() int64 {
		var n int64
		if err := eventlog.ReadTopic(ctx, cfg, cfg.EventsTopic, func(_, _ []byte, _ int, _ int64) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != total {
		t.Fatalf("a rebuild with both keys in the set read %d of %d records", n, total)
	}
	keySetWith(t, setFile, newEntry)
	waitFor("the old key removed", func() bool { return count() == int64(kids[newEntry.KID]) })
	if n := refusedCount(t, metrics, eventlog.PathReadTopic); n < int64(kids[oldEntry.KID]) {
		t.Errorf("herald_events_refused_total{path=read_topic} = %d; want at least the %d records of the removed key", n, kids[oldEntry.KID])
	}
}

// TestDeadLettersAreSignedByTheServiceThatDeadLettersThem: a consumer
// with a signing key signs what it puts on the dead-letter topic (over the
// dead-letter topic), keeping the record's own signature header apart, so
// a reader of the dead letters can tell Herald's from anyone's.
func TestDeadLettersAreSignedByTheServiceThatDeadLettersThem(t *testing.T) {
	cfg, keys := signedConfig(t, 1)
	ctx := context.Background()
	stranger := writerAs(t, cfg, "intake", strangerKey(t))
	if err := stranger.Append(ctx, raised("dead", 0)); err != nil {
		t.Fatal(err)
	}
	consumer := cfg
	consumer.SigningKeyFile = keys.PrivateKeyFiles[eventsign.ServiceNotification]
	stop := consume(t, consumer, testinfra.UniqueName("group"), func(context.Context, eventlog.Delivery) error { return nil })
	defer stop()
	testinfra.DeadLetters(t, cfg.Brokers, cfg.DLQTopic, eventlog.HeaderDLQReason, time.Minute, "dead")
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Brokers, Topic: cfg.DLQTopic, Partition: 0})
	defer r.Close()
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	m, err := r.ReadMessage(rctx)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := eventsign.LoadKeySet(keys.KeySetFile)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := ks.Verify(cfg.DLQTopic, m.Key, m.Value, eventlog.SignatureOf(m.Headers))
	if err != nil || svc != eventsign.ServiceNotification {
		t.Fatalf("the dead letter verifies as %q, %v; want signed by notification over the dead-letter topic", svc, err)
	}
	if err := eventsign.AllowedOn(svc, eventsign.TopicDeadLetters); err != nil {
		t.Fatal(err)
	}
	var original []byte
	for _, h := range m.Headers {
		if h.Key == eventsign.HeaderOriginalSignature {
			original = h.Value
		}
	}
	if _, err := ks.Verify(cfg.EventsTopic, m.Key, m.Value, original); err == nil || !strings.Contains(err.Error(), "unknown signing key") {
		t.Fatalf("the record's own signature was not kept apart (%q: %v)", original, err)
	}
}
