package eventsign

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

var update = flag.Bool("update", false, "rewrite the generated table in docs/authorization.md")

func newKey(t testing.TB) (ed25519.PublicKey, *Signer) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pub, s
}

func TestVerifyAcceptsARecordSignedByAKnownKeyAndRefusesEveryForgery(t *testing.T) {
	ackPub, ack := newKey(t)
	notifPub, _ := newKey(t)
	_, stranger := newKey(t)
	ks, err := NewKeySet(Key{Service: ServiceAcknowledgement, Public: ackPub}, Key{Service: ServiceNotification, Public: notifPub})
	if err != nil {
		t.Fatal(err)
	}
	topic, key, value := "herald.alert-events.v1", []byte("alert-1"), []byte("event bytes")
	sig := ack.Sign(topic, key, value)
	if !strings.HasPrefix(string(sig), ack.KeyID()+".") {
		t.Fatalf("signature header %q does not start with the key id %q", sig, ack.KeyID())
	}
	svc, err := ks.Verify(topic, key, value, sig)
	if err != nil || svc != ServiceAcknowledgement {
		t.Fatalf("Verify = %q, %v; want acknowledgement, nil", svc, err)
	}

	cases := []struct {
		name            string
		topic           string
		key, value, sig []byte
		want            error
	}{
		{"unsigned", topic, key, value, nil, ErrUnsigned},
		{"no kid", topic, key, value, []byte("abc"), ErrMalformed},
		{"signature not base64", topic, key, value, []byte(ack.KeyID() + ".!!!"), ErrMalformed},
		{"unknown key", topic, key, value, stranger.Sign(topic, key, value), ErrUnknownKey},
		{"altered value", topic, key, []byte("event bytez"), sig, ErrBadSignature},
		{"moved to another alert", topic, []byte("alert-2"), value, sig, ErrBadSignature},
		{"moved to another topic", "herald.policy-bundles.v1", key, value, sig, ErrBadSignature},
		{"another key's signature under this kid", topic, key, value, []byte(ack.KeyID() + string(stranger.Sign(topic, key, value))[len(stranger.KeyID()):]), ErrBadSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			svc, err := ks.Verify(c.topic, c.key, c.value, c.sig)
			if !errors.Is(err, c.want) || !errors.Is(err, ErrRefused) || svc != "" {
				t.Fatalf("Verify = %q, %v; want %v (wrapping ErrRefused)", svc, err, c.want)
			}
		})
	}
}

func TestMessageLengthPrefixesSoNoTwoRecordsShareIt(t *testing.T) {
	a := Message("t", []byte("ab"), []byte("c"))
	b := Message("t", []byte("a"), []byte("bc"))
	if string(a) == string(b) {
		t.Fatal("key|value boundaries are not part of the signed message")
	}
}

func TestAllowedFollowsTheProducersTable(t *testing.T) {
	if err := Allowed(ServiceAcknowledgement, "AlertAcknowledged"); err != nil {
		t.Fatalf("acknowledgement appending AlertAcknowledged: %v", err)
	}
	for _, c := range []struct{ svc, typ string }{
		{ServiceNotification, "AlertAcknowledged"},
		{ServiceIntake, "AlertRouted"},
		{ServiceRules, "BundleProposed" + "X"},
		{ServiceAcknowledgement, "AlertRaised"},
		{ServiceRules, "NotificationSent"},
	} {
		if err := Allowed(c.svc, c.typ); !errors.Is(err, ErrNotAllowed) {
			t.Errorf("Allowed(%s, %s) = %v; want ErrNotAllowed", c.svc, c.typ, err)
		}
	}
}

func TestEveryEventTypeHasAProducer(t *testing.T) {
	oneof := (&eventsv1.Event{}).ProtoReflect().Descriptor().Oneofs().ByName(protoreflect.Name("payload"))
	fields := oneof.Fields()
	seen := map[string]bool{}
	for i := range fields.Len() {
		typ := string(fields.Get(i).Message().Name())
		seen[typ] = true
		p, ok := Producers[typ]
		if !ok || len(p.Services) == 0 {
			t.Errorf("event type %s has no row in eventsign.Producers: every consumer would refuse it", typ)
		}
	}
	for typ := range Producers {
		if !seen[typ] {
			t.Errorf("eventsign.Producers names %s, which is not a payload of herald.events.v1.Event", typ)
		}
	}
}

func TestProducersAreDocumented(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "authorization.md")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- event-producers:begin (generated: go test ./platform/eventsign -run TestProducersAreDocumented -update) -->\n", "<!-- event-producers:end -->"
	i, j := strings.Index(string(doc), begin), strings.Index(string(doc), end)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the table markers %q ... %q", path, begin, end)
	}
	want := Markdown()
	if got := string(doc[i+len(begin) : j]); got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(string(doc[:i+len(begin)])+want+string(doc[j:])), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s's producers table differs from eventsign.Producers; run go test ./platform/eventsign -run TestProducersAreDocumented -update", path)
}

func TestGeneratedFilesLoadAndBindEachKeyToItsService(t *testing.T) {
	dir := t.TempDir()
	g, err := GenerateFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := LoadKeySet(g.KeySetFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(ks.Keys()); got != len(Services()) {
		t.Fatalf("key set holds %d keys; want %d", got, len(Services()))
	}
	for _, svc := range Services() {
		s, err := LoadSigner(g.PrivateKeyFiles[svc])
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := os.Stat(g.PrivateKeyFiles[svc]); st.Mode().Perm() != 0o600 {
			t.Errorf("%s's private key file has mode %v; want 0600", svc, st.Mode().Perm())
		}
		got, err := ks.Verify("t", []byte("k"), []byte("v"), s.Sign("t", []byte("k"), []byte("v")))
		if err != nil || got != svc {
			t.Errorf("a record signed with %s's key verified as %q, %v", svc, got, err)
		}
	}
	// A directory of key sets (a mounted Secret during a rotation) merges them.
	if _, err := LoadKeySet(dir); err != nil {
		t.Fatalf("LoadKeySet(dir) = %v", err)
	}
}

func TestLoadKeySetRefusesBadFilesNamingTheField(t *testing.T) {
	g, err := GenerateFiles(t.TempDir(), ServiceIntake)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(g.KeySetFile)
	privPEM, _ := os.ReadFile(g.PrivateKeyFiles[ServiceIntake])
	indent := func(s string) string { return "      " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n      ") }
	cases := map[string]struct{ body, want string }{
		"unknown service": {strings.Replace(string(good), "service: intake", "service: console", 1), "produces no events"},
		"missing service": {strings.Replace(string(good), "service: intake", "service: \"\"", 1), "keys[0].service is required"},
		"kid mismatch":    {strings.Replace(string(good), "kid: ", "kid: X", 1), "is listed as kid"},
		"private key":     {"keys:\n  - service: intake\n    public_key: |\n" + indent(string(privPEM)) + "\n", "never the private key"},
		"unknown field":   {string(good) + "extra: 1\n", "extra"},
		"empty":           {"keys: []\n", "holds no key"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "keys.yaml")
			if err := os.WriteFile(p, []byte(c.body), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadKeySet(p)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("LoadKeySet = %v; want an error containing %q", err, c.want)
			}
		})
	}
}

// BenchmarkSignVerify measures signing one record and verifying it (a
// typical AlertRouted-sized value of 1 KiB), the cost every event pays
// once at its producer and once per consumer group.
func BenchmarkSignVerify(b *testing.B) {
	pub, s := newKey(b)
	ks, _ := NewKeySet(Key{Service: ServiceRules, Public: pub})
	key, value := []byte("0123456789abcdef0123456789abcdef"), make([]byte, 1024)
	b.ReportAllocs()
	for b.Loop() {
		sig := s.Sign("herald.alert-events.v1", key, value)
		if _, err := ks.Verify("herald.alert-events.v1", key, value, sig); err != nil {
			b.Fatal(err)
		}
	}
}

var latency = flag.Bool("eventsign.latency", false, "measure the sign and verify latency distribution")

// TestSignVerifyLatency prints the median and p99 of signing and of
// verifying one 1 KiB record over 20,000 records (with
// -eventsign.latency; figures, not a verdict).
func TestSignVerifyLatency(t *testing.T) {
	if !*latency {
		t.Skip("figures only: go test ./platform/eventsign -run TestSignVerifyLatency -eventsign.latency -v")
	}
	pub, s := newKey(t)
	ks, _ := NewKeySet(Key{Service: ServiceRules, Public: pub})
	key, value := []byte("0123456789abcdef0123456789abcdef"), make([]byte, 1024)
	const n = 20_000
	signs, verifies := make([]time.Duration, n), make([]time.Duration, n)
	for i := range n {
		value[0] = byte(i)
		start := time.Now()
		sig := s.Sign("herald.alert-events.v1", key, value)
		mid := time.Now()
		if _, err := ks.Verify("herald.alert-events.v1", key, value, sig); err != nil {
			t.Fatal(err)
		}
		signs[i], verifies[i] = mid.Sub(start), time.Since(mid)
	}
	for _, d := range [][]time.Duration{signs, verifies} {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	}
	t.Logf("per 1 KiB record over %d records: sign median %v p99 %v; verify median %v p99 %v", n, signs[n/2], signs[n*99/100], verifies[n/2], verifies[n*99/100])
}
