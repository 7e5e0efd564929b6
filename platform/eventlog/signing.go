package eventlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/herald-health/herald/platform/eventsign"
	"github.com/herald-health/herald/platform/telemetry"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// Signing of records (issue #20, item 7; platform/eventsign): a Writer
// with Config.SigningKeyFile signs every record it writes (topic, key and
// value) in the header eventsign.HeaderSignature; a reader with
// Config.VerifyKeysFile (Consume, Tail, ReadTopic) accepts only records
// signed by a key of the set whose service may produce the event's type.
// Consume dead-letters a refused record with the reason (logged and
// counted in herald_events_refused_total by reason); Tail and ReadTopic
// skip it, so it never reaches a projection either.

// Signing says why the service's events would not be signed and
// verified, naming the settings that fix it, or returns "": a
// servicemain.Hop, so that the production profile refuses to start
// without keys (Security.Check) and a development system says so at start.
func (c Config) Signing() signingHop { return signingHop(c) }

type signingHop Config

// Plaintext implements servicemain.Hop.
func (h signingHop) Plaintext() string {
	var missing []string
	if h.SigningKeyFile == "" {
		missing = append(missing, "event-signing-key-file")
	}
	if h.VerifyKeysFile == "" {
		missing = append(missing, "event-verify-keys-file")
	}
	if len(missing) == 0 {
		return ""
	}
	return "events are not signed and verified (set " + strings.Join(missing, ", ") + ")"
}

// validateSigning loads the key files, so a bad one stops the service at
// start with the setting's name.
func (c Config) validateSigning() []error {
	var errs []error
	if c.SigningKeyFile != "" {
		if _, err := eventsign.LoadSigner(c.SigningKeyFile); err != nil {
			errs = append(errs, fmt.Errorf("setting event-signing-key-file: %w", err))
		}
	}
	if c.VerifyKeysFile != "" {
		if _, err := eventsign.LoadKeySet(c.VerifyKeysFile); err != nil {
			errs = append(errs, fmt.Errorf("setting event-verify-keys-file: %w", err))
		}
	}
	return errs
}

// keySources are the process's key Sources, one per set of files, so
// every Writer and reader of a service shares one (one re-read of the
// files, one log line per reload).
var keySources struct {
	mu sync.Mutex
	m  map[keySourceKey]*eventsign.Source
}

type keySourceKey struct {
	files eventsign.Files
	every time.Duration
}

// keys returns the Source of c's key files (nil when c names none): the
// signing key and key set in use, re-read when the files change
// (KeysCheckEvery), so a rotation needs no restart.
func (c Config) keys() (*eventsign.Source, error) {
	if c.SigningKeyFile == "" && c.VerifyKeysFile == "" {
		return nil, nil
	}
	k := keySourceKey{files: eventsign.Files{SigningKeyFile: c.SigningKeyFile, VerifyKeysFile: c.VerifyKeysFile}, every: c.KeysCheckEvery}
	keySources.mu.Lock()
	defer keySources.mu.Unlock()
	if src := keySources.m[k]; src != nil {
		return src, nil
	}
	src, err := eventsign.LoadSource(k.files, eventsign.SourceOptions{CheckEvery: c.KeysCheckEvery, Logger: c.observer().log})
	if err != nil {
		return nil, err
	}
	if keySources.m == nil {
		keySources.m = map[keySourceKey]*eventsign.Source{}
	}
	keySources.m[k] = src
	return src, nil
}

// Observed returns c with the logger and telemetry that record what the
// readers of the log refuse (a log line and herald_events_refused_total
// by path, for every skipped record, not only the consumer groups' dead
// letters) and the reloads of the event keys. The composition root sets
// them; without them refusals are still skipped, but only the consumer
// groups (through their own logger) say so.
func (c Config) Observed(log *slog.Logger, tel *telemetry.Telemetry) Config {
	c.obsLog, c.obsTel = log, tel
	return c
}

type observer struct {
	log *slog.Logger
	tel *telemetry.Telemetry
}

func (c Config) observer() observer {
	o := observer{log: c.obsLog, tel: c.obsTel}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.tel == nil {
		o.tel = telemetry.Nop("eventlog")
	}
	return o
}

// Verifier checks the signature and the signer's right to produce of the
// records a reader takes from the log, against the key set in use (re-read
// when its file changes), and reports what it refuses (Refused). A nil
// *Verifier accepts every record (no key set configured: a development
// system).
type Verifier struct {
	src     *eventsign.Source
	fixed   *eventsign.KeySet
	log     *slog.Logger
	refused metric.Int64Counter
}

// NewVerifier returns the verifier of cfg's key set, or nil when cfg has
// none.
func NewVerifier(cfg Config) (*Verifier, error) {
	if cfg.VerifyKeysFile == "" {
		return nil, nil
	}
	src, err := cfg.keys()
	if err != nil {
		return nil, err
	}
	v := &Verifier{src: src}
	v.observe(cfg.observer())
	return v, nil
}

// NewVerifierOf returns a verifier of a fixed key set.
func NewVerifierOf(ks *eventsign.KeySet) *Verifier {
	v := &Verifier{fixed: ks}
	v.observe(Config{}.observer())
	return v
}

func (v *Verifier) observe(o observer) {
	v.log = o.log
	v.refused, _ = o.tel.Meter().Int64Counter("herald_events_refused_total", metric.WithDescription(
		"records refused for their signature (unsigned, unknown key, bad signature, signer not allowed), by the path that read them: "+
			"dead-lettered by a consumer group (path consume), skipped by a rebuild or read-back (every other path); never applied"))
}

func (v *Verifier) keySet() *eventsign.KeySet {
	if v.fixed != nil {
		return v.fixed
	}
	return v.src.KeySet()
}

// Check returns nil when the record is signed by a trusted key over this
// topic, key and value and, when ev is not nil (the record decoded as an
// event), the signer may produce ev's type and ev's producer, when set,
// names the signer. The error wraps eventsign.ErrRefused and says why,
// naming the key, service and type, never the record's content.
func (v *Verifier) Check(topic string, key, value []byte, headers []kafka.Header, ev *eventsv1.Event) error {
	if v == nil {
		return nil
	}
	service, err := v.keySet().Verify(topic, key, value, SignatureOf(headers))
	if err != nil {
		return err
	}
	if ev == nil {
		return nil
	}
	if err := eventsign.Allowed(service, TypeOf(ev)); err != nil {
		return err
	}
	if p := ev.GetProducer(); p != "" {
		if name, _, _ := strings.Cut(p, "/"); name != service {
			return fmt.Errorf("%w (%s attributed to producer %q but signed by %s)", eventsign.ErrNotAllowed, TypeOf(ev), p, service)
		}
	}
	return nil
}

// CheckOn is Check for a record of a topic that holds no events: the
// record must be signed by a trusted key of a service that may write the
// topic of role (eventsign.TopicWriters).
func (v *Verifier) CheckOn(role, topic string, key, value []byte, headers []kafka.Header) error {
	if v == nil {
		return nil
	}
	service, err := v.keySet().Verify(topic, key, value, SignatureOf(headers))
	if err != nil {
		return err
	}
	return eventsign.AllowedOn(service, role)
}

// Refusal is where a refused record was read, for Verifier.Refused: ids
// and types only, never the record's content.
type Refusal struct {
	// Path names the reader: "consume" (a consumer group, which
	// dead-letters), "read_topic" (a rebuild), "tail" (read-your-writes),
	// "rules_range", "audit_catch_up", "audit_trail", ...
	Path      string
	Group     string
	Topic     string
	Partition int
	Offset    int64
	// Event is the decoded event, when the record is one.
	Event *eventsv1.Event
}

// Refused logs a refused record (at error: a forgery, or a record signed
// by a key since removed from the set) and counts it in
// herald_events_refused_total{path, topic, event_type, reason}. Every
// reader that skips a record calls it, so no skip is silent.
func (v *Verifier) Refused(ctx context.Context, r Refusal, err error) {
	if v == nil {
		return
	}
	typ := "raw"
	if r.Event != nil {
		typ = TypeOf(r.Event)
	}
	reason := RefusalReason(err)
	attrs := []attribute.KeyValue{attribute.String("path", r.Path), attribute.String("topic", r.Topic),
		attribute.String("event_type", typ), attribute.String("reason", reason)}
	if r.Group != "" {
		attrs = append(attrs, attribute.String("group", r.Group))
	}
	v.refused.Add(context.WithoutCancel(ctx), 1, metric.WithAttributes(attrs...))
	what := "record refused: skipped, not applied"
	if r.Path == PathConsume {
		what = "record refused: not applied"
	}
	v.log.ErrorContext(ctx, what, "path", r.Path, "group", r.Group, "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
		"alert_id", r.Event.GetAlertId(), "event_id", r.Event.GetEventId(), "event_type", typ, "reason", reason, "error", err.Error())
}

// Paths of Refusal (the path label of herald_events_refused_total) that
// this package reads by.
const (
	PathConsume   = "consume"
	PathReadTopic = "read_topic"
	PathTail      = "tail"
	PathPartition = "partition_read"
)

// SignatureOf returns the value of the last signature header, or nil.
func SignatureOf(headers []kafka.Header) []byte {
	var sig []byte
	for _, h := range headers {
		if h.Key == eventsign.HeaderSignature {
			sig = h.Value
		}
	}
	return sig
}

// RefusalReason names the kind of a Check error for metrics: unsigned,
// malformed, unknown_key, bad_signature, not_allowed, or other.
func RefusalReason(err error) string {
	switch {
	case errors.Is(err, eventsign.ErrUnsigned):
		return "unsigned"
	case errors.Is(err, eventsign.ErrMalformed):
		return "malformed"
	case errors.Is(err, eventsign.ErrUnknownKey):
		return "unknown_key"
	case errors.Is(err, eventsign.ErrBadSignature):
		return "bad_signature"
	case errors.Is(err, eventsign.ErrNotAllowed):
		return "not_allowed"
	default:
		return "other"
	}
}

// sign sets the signature header of m (replacing one already there: a
// record is signed by the writer that writes it).
func sign(s *eventsign.Signer, m *kafka.Message) {
	if s == nil {
		return
	}
	sig := s.Sign(m.Topic, m.Key, m.Value)
	headers := make([]kafka.Header, 0, len(m.Headers)+1)
	for _, h := range m.Headers {
		if h.Key != eventsign.HeaderSignature {
			headers = append(headers, h)
		}
	}
	m.Headers = append(headers, kafka.Header{Key: eventsign.HeaderSignature, Value: sig})
}

// signer returns the signing key in use now (nil: none configured).
func signerOf(src *eventsign.Source) *eventsign.Signer {
	if src == nil {
		return nil
	}
	return src.Signer()
}
