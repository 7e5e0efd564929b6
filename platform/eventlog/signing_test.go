package eventlog_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/eventsign"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// signedConfig returns fresh topics whose readers verify against a key set
// of every service, and the private key file of each.
func signedConfig(t *testing.T, partitions int) (eventlog.Config, eventsign.Generated) {
	t.Helper()
	cfg := testConfig(t, partitions)
	keys, err := eventsign.GenerateFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg.VerifyKeysFile = keys.KeySetFile
	return cfg, keys
}

// writerAs returns a writer signing with keyFile ("" : unsigned) under the
// producer name.
func writerAs(t *testing.T, cfg eventlog.Config, producer, keyFile string) *eventlog.Writer {
	t.Helper()
	cfg.SigningKeyFile = keyFile
	w := eventlog.NewWriter(cfg, producer, telemetry.Nop("test"))
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// strangerKey writes an Ed25519 key that no key set holds.
func strangerKey(t *testing.T) string {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privPEM, _, err := eventsign.EncodeKeyPair(pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "stranger.key")
	if err := os.WriteFile(p, privPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func acknowledged(alertID string) *eventsv1.Event {
	return &eventsv1.Event{EventId: eventlog.ID(alertID, "ack"), AlertId: alertID, Tenant: "RZZ",
		Payload: &eventsv1.Event_AlertAcknowledged{AlertAcknowledged: &eventsv1.AlertAcknowledged{}}}
}

func TestForgedRecordsAreDeadLetteredWithTheReasonAndNeverHandled(t *testing.T) {
	cfg, keys := signedConfig(t, 1)
	ctx := context.Background()
	intake := writerAs(t, cfg, "intake", keys.PrivateKeyFiles[eventsign.ServiceIntake])
	ack := writerAs(t, cfg, "acknowledgement/r1", keys.PrivateKeyFiles[eventsign.ServiceAcknowledgement])
	notification := writerAs(t, cfg, "notification", keys.PrivateKeyFiles[eventsign.ServiceNotification])
	unsigned := writerAs(t, cfg, "intake", "")
	stranger := writerAs(t, cfg, "intake", strangerKey(t))

	// Given: the genuine records and every kind of forgery, in one partition.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(intake.Append(ctx, raised("good-raised", 0)))
	must(unsigned.Append(ctx, raised("unsigned", 0)))
	must(stranger.Append(ctx, raised("unknown-key", 0)))
	must(notification.Append(ctx, acknowledged("wrong-producer")))
	misattributed := acknowledged("misattributed")
	misattributed.Producer = "acknowledgement" // claims acknowledgement, signed by intake
	must(intake.Append(ctx, misattributed))
	// A genuine signature of another record copied onto an altered value.
	forged := raised("altered", 0)
	forged.Producer = "intake"
	value, _ := proto.Marshal(forged)
	other, _ := proto.Marshal(raised("altered", 1))
	intakeSigner, err := eventsign.LoadSigner(keys.PrivateKeyFiles[eventsign.ServiceIntake])
	must(err)
	must(unsigned.Put(ctx, cfg.EventsTopic, "altered", value, kafka.Header{Key: eventsign.HeaderSignature, Value: intakeSigner.Sign(cfg.EventsTopic, []byte("altered"), other)}))
	must(ack.Append(ctx, acknowledged("good-ack")))

	// When a consumer verifying against the key set reads them.
	c := newCollector(2)
	stop := consume(t, cfg, testinfra.UniqueName("group"), c.handle)
	got := c.wait(t)

	// Then the genuine ones alone are handled, and every forgery is in the
	// dead-letter topic with its reason.
	reasons := testinfra.DeadLetters(t, cfg.Brokers, cfg.DLQTopic, eventlog.HeaderDLQReason, 60*time.Second,
		"unsigned", "unknown-key", "wrong-producer", "misattributed", "altered")
	stop()
	if len(got) != 2 || got[0].Event.GetAlertId() != "good-raised" || got[1].Event.GetAlertId() != "good-ack" {
		var ids []string
		for _, d := range got {
			ids = append(ids, d.Event.GetAlertId())
		}
		t.Fatalf("handled %v; want [good-raised good-ack]", ids)
	}
	c.mu.Lock()
	handled := len(c.got)
	c.mu.Unlock()
	if handled != 2 {
		t.Fatalf("handled %d records; want only the 2 genuine ones", handled)
	}
	for key, want := range map[string]string{
		"unsigned":       "unsigned record",
		"unknown-key":    "unknown signing key",
		"wrong-producer": "notification signed AlertAcknowledged, which only [acknowledgement] may produce",
		"misattributed":  "intake signed AlertAcknowledged",
		"altered":        "bad signature",
	} {
		if !strings.Contains(reasons[key], want) {
			t.Errorf("dead-letter reason of %s: got %q, want it to contain %q", key, reasons[key], want)
		}
	}

	// And a rebuild (ReadTopic) and the read-your-writes tail skip them too.
	var rebuilt []string
	must(eventlog.ReadTopic(ctx, cfg, cfg.EventsTopic, func(_, value []byte, _ int, _ int64) error {
		var ev eventsv1.Event
		must(proto.Unmarshal(value, &ev))
		rebuilt = append(rebuilt, ev.GetAlertId())
		return nil
	}))
	if strings.Join(rebuilt, ",") != "good-raised,good-ack" {
		t.Errorf("ReadTopic handed %v; want only good-raised, good-ack", rebuilt)
	}
	tail := eventlog.NewTail(cfg, testinfra.UniqueName("nobody"))
	defer tail.Close()
	for _, key := range []string{"unsigned", "wrong-producer", "altered", "good-ack"} {
		ds, err := tail.Unhandled(ctx, key, -1, 1000)
		must(err)
		if want := map[bool]int{true: 1, false: 0}[key == "good-ack"]; len(ds) != want {
			t.Errorf("Tail.Unhandled(%s) = %d records; want %d", key, len(ds), want)
		}
	}
}

func TestWriterSignsEveryRecordItPuts(t *testing.T) {
	cfg, keys := signedConfig(t, 1)
	ks, err := eventsign.LoadKeySet(keys.KeySetFile)
	if err != nil {
		t.Fatal(err)
	}
	w := writerAs(t, cfg, "acknowledgement", keys.PrivateKeyFiles[eventsign.ServiceAcknowledgement])
	ctx := context.Background()
	if err := w.Put(ctx, cfg.StateTopic, "a1", []byte("state")); err != nil {
		t.Fatal(err)
	}
	n := 0
	err = eventlog.ReadTopic(ctx, cfg, cfg.StateTopic, func(key, value []byte, _ int, _ int64) error {
		n++
		return nil
	})
	if err != nil || n != 1 {
		t.Fatalf("ReadTopic of the state topic read %d records (%v); want the 1 signed one", n, err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Brokers, Topic: cfg.StateTopic, Partition: 0})
	defer r.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	m, err := r.ReadMessage(rctx)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := ks.Verify(cfg.StateTopic, m.Key, m.Value, eventlog.SignatureOf(m.Headers))
	if err != nil || svc != eventsign.ServiceAcknowledgement {
		t.Fatalf("the state record verifies as %q, %v; want acknowledgement", svc, err)
	}
}

func TestValidateNamesABadKeyFileAndSigningSaysWhatIsMissing(t *testing.T) {
	keys, err := eventsign.GenerateFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := eventlog.DefaultConfig()
	if why := cfg.Signing().Plaintext(); !strings.Contains(why, "event-signing-key-file, event-verify-keys-file") {
		t.Errorf("Signing() of a config without keys = %q; want both settings named", why)
	}
	cfg.SigningKeyFile, cfg.VerifyKeysFile = keys.PrivateKeyFiles[eventsign.ServiceRules], keys.KeySetFile
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate with good keys: %v", err)
	}
	if why := cfg.Signing().Plaintext(); why != "" {
		t.Errorf("Signing() with both keys = %q; want empty", why)
	}
	bad := cfg
	bad.SigningKeyFile = keys.KeySetFile // not a private key
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "setting event-signing-key-file") {
		t.Errorf("Validate with a key set as the signing key = %v; want the setting named", err)
	}
	bad = cfg
	bad.VerifyKeysFile = keys.PrivateKeyFiles[eventsign.ServiceRules] // a private key, not a key set
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "setting event-verify-keys-file") {
		t.Errorf("Validate with a private key as the key set = %v; want the setting named", err)
	}
}

// A group's Ignore spares the check of records it would not apply: they
// are committed, neither handled nor dead-lettered by it.
func TestIgnoredRecordsAreCommittedWithoutVerification(t *testing.T) {
	cfg, keys := signedConfig(t, 1)
	ctx := context.Background()
	intake := writerAs(t, cfg, "intake", keys.PrivateKeyFiles[eventsign.ServiceIntake])
	unsigned := writerAs(t, cfg, "intake", "")
	if err := unsigned.Append(ctx, raised("ignored", 0)); err != nil {
		t.Fatal(err)
	}
	if err := intake.Append(ctx, raised("good", 0)); err != nil {
		t.Fatal(err)
	}
	group := testinfra.UniqueName("group")
	c := newCollector(1)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- eventlog.Consume(cctx, eventlog.ConsumerConfig{Config: cfg, GroupID: group, MinBackoff: 10 * time.Millisecond,
			Ignore: func(ev *eventsv1.Event) bool { return ev.GetAlertId() == "ignored" }}, c.handle)
	}()
	got := c.wait(t)
	testinfra.WaitCommitted(t, cfg.Brokers, cfg.EventsTopic, 30*time.Second, group)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Event.GetAlertId() != "good" {
		t.Fatalf("handled %d records; want only good", len(got))
	}
	if dl := testinfra.DeadLetterReasons(t, cfg.Brokers, cfg.DLQTopic, eventlog.HeaderDLQReason); len(dl) != 0 {
		t.Fatalf("dead letters %v; want none (the ignored record is not this group's to refuse)", dl)
	}
}
