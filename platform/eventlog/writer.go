package eventlog

import (
	"context"
	"fmt"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/eventsign"
	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/telemetry"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// SchemaVersion of the events this package writes.
const SchemaVersion = 1

// Writer appends events durably. It is safe for concurrent use; concurrent
// appends share produce requests (see producer).
type Writer struct {
	p         *producer
	transport *kafka.Transport
	topic     string
	producer  string
	tel       *telemetry.Telemetry
	// keys holds the signing key that signs every record (nil: unsigned,
	// a development system), re-read when its file changes; signErr is
	// why the configured key could not be loaded (Validate checked it at
	// start), returned by every write.
	keys    *eventsign.Source
	signErr error
}

// NewWriter returns a writer with acks=all and hash partitioning on the key
// (the alert id). producer names the appending service in each event's
// envelope when the event does not.
func NewWriter(cfg Config, producer string, tel *telemetry.Telemetry) *Writer {
	transport := cfg.newTransport("herald-" + producer)
	if tel == nil {
		tel = telemetry.Nop(producer)
	}
	var keys *eventsign.Source
	var err error
	if cfg.SigningKeyFile != "" {
		keys, err = cfg.keys()
	}
	return &Writer{
		p:         newProducer(cfg.Brokers, transport),
		transport: transport,
		topic:     cfg.EventsTopic,
		producer:  producer,
		tel:       tel,
		keys:      keys,
		signErr:   err,
	}
}

// write signs msgs and writes them.
func (w *Writer) write(ctx context.Context, msgs ...kafka.Message) error {
	if w.signErr != nil {
		return w.signErr
	}
	signer := signerOf(w.keys)
	for i := range msgs {
		sign(signer, &msgs[i])
	}
	return w.p.Write(ctx, msgs...)
}

// unavailableError marks a broker failure as retryable (fault.ErrUnavailable)
// while keeping the cause.
type unavailableError struct{ err error }

func (e unavailableError) Error() string        { return e.err.Error() }
func (e unavailableError) Unwrap() error        { return e.err }
func (e unavailableError) Is(target error) bool { return target == fault.ErrUnavailable }

// Append writes events to the events topic, each keyed by its alert id, and
// returns once the broker has acknowledged all of them (acks=all). The
// trace context of ctx goes into each record's headers. An error wraps
// fault.ErrUnavailable when the broker could not be reached or refused the
// write: the caller may retry with the same events (ids are deterministic).
func (w *Writer) Append(ctx context.Context, events ...*eventsv1.Event) error {
	if len(events) == 0 {
		return nil
	}
	ctx, span := w.tel.Tracer().Start(ctx, "eventlog.append", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.destination.name", w.topic),
			attribute.Int("messaging.batch.message_count", len(events)),
			attribute.String("herald.alert_id", events[0].GetAlertId()),
			attribute.String("herald.event_type", TypeOf(events[0])),
		))
	defer span.End()

	msgs := make([]kafka.Message, 0, len(events))
	for _, e := range events {
		if e.GetEventId() == "" || e.GetAlertId() == "" {
			err := fmt.Errorf("append event of type %q: event id and alert id are required", TypeOf(e))
			span.SetStatus(codes.Error, err.Error())
			return err
		}
		if e.SchemaVersion == 0 {
			e.SchemaVersion = SchemaVersion
		}
		if e.Producer == "" {
			e.Producer = w.producer
		}
		value, err := proto.Marshal(e)
		if err != nil {
			return fmt.Errorf("encode event %s: %w", e.GetEventId(), err)
		}
		headers := []kafka.Header{
			{Key: HeaderEventType, Value: []byte(TypeOf(e))},
			{Key: HeaderEventID, Value: []byte(e.GetEventId())},
		}
		w.tel.Propagator.Inject(ctx, HeaderCarrier{Headers: &headers})
		msgs = append(msgs, kafka.Message{Topic: w.topic, Key: []byte(e.GetAlertId()), Value: value, Headers: headers})
	}
	if err := w.write(ctx, msgs...); err != nil {
		span.SetStatus(codes.Error, "append failed")
		return fmt.Errorf("append %d events to %s: %w", len(msgs), w.topic, unavailableError{err})
	}
	return nil
}

// Put writes one raw record to topic (the state topic, the dead-letter
// topic) and waits for acks=all. A nil value is a tombstone.
func (w *Writer) Put(ctx context.Context, topic, key string, value []byte, headers ...kafka.Header) error {
	if err := w.write(ctx, kafka.Message{Topic: topic, Key: []byte(key), Value: value, Headers: headers}); err != nil {
		return fmt.Errorf("put record %s to %s: %w", key, topic, unavailableError{err})
	}
	return nil
}

// PutMany writes raw records (each with its Topic set) and waits for acks=all.
func (w *Writer) PutMany(ctx context.Context, msgs ...kafka.Message) error {
	if err := w.write(ctx, msgs...); err != nil {
		return fmt.Errorf("put %d records: %w", len(msgs), unavailableError{err})
	}
	return nil
}

// Close writes what is queued and closes the writer.
func (w *Writer) Close() error {
	w.p.Close()
	w.transport.CloseIdleConnections()
	return nil
}
