package eventlog

import (
	"errors"
	"fmt"
	"strings"

	"github.com/segmentio/kafka-go"

	"github.com/herald-health/herald/platform/eventsign"
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

// signer returns the Writer's signer (nil without a key file).
func (c Config) signer() (*eventsign.Signer, error) {
	if c.SigningKeyFile == "" {
		return nil, nil
	}
	s, err := eventsign.LoadSigner(c.SigningKeyFile)
	if err != nil {
		return nil, fmt.Errorf("setting event-signing-key-file: %w", err)
	}
	return s, nil
}

// Verifier checks the signature and the signer's right to produce of the
// records a reader takes from the log. A nil *Verifier accepts every
// record (no key set configured: a development system).
type Verifier struct {
	keys *eventsign.KeySet
}

// NewVerifier returns the verifier of cfg's key set, or nil when cfg has
// none.
func NewVerifier(cfg Config) (*Verifier, error) {
	if cfg.VerifyKeysFile == "" {
		return nil, nil
	}
	ks, err := eventsign.LoadKeySet(cfg.VerifyKeysFile)
	if err != nil {
		return nil, fmt.Errorf("setting event-verify-keys-file: %w", err)
	}
	return &Verifier{keys: ks}, nil
}

// NewVerifierOf returns a verifier of a key set.
func NewVerifierOf(ks *eventsign.KeySet) *Verifier { return &Verifier{keys: ks} }

// Check returns nil when the record is signed by a trusted key over this
// topic, key and value and, when ev is not nil (the record decoded as an
// event), the signer may produce ev's type and ev's producer, when set,
// names the signer. The error wraps eventsign.ErrRefused and says why,
// naming the key, service and type, never the record's content.
func (v *Verifier) Check(topic string, key, value []byte, headers []kafka.Header, ev *eventsv1.Event) error {
	if v == nil {
		return nil
	}
	service, err := v.keys.Verify(topic, key, value, SignatureOf(headers))
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
