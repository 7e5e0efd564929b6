// Package app is intake's application service: it takes the submissions of
// one received message (from any channel), answers a resend with the
// original outcome, decides the events, appends them durably and only then
// reports success. It owns the per-message span that roots each alert's
// trace.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/eventtype"
	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/telemetry"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/intake/internal/domain"
)

// Appender appends events durably. Append returns nil only when every event
// is durable (acks=all); an error means nothing may be assumed written, and
// appending the same events again is safe because their ids are
// deterministic. Errors that are fault.ErrUnavailable are worth retrying.
type Appender interface {
	Append(ctx context.Context, events ...*eventsv1.Event) error
}

// OutcomeStore remembers the outcome of each accepted message, keyed by its
// duplicate key, across restarts and replicas. It is a cache: Get returning
// an error means "unknown" (the message is processed again, harmlessly, as
// its event ids are deterministic); a failed Put only loses the memory.
type OutcomeStore interface {
	Get(ctx context.Context, key string) (Record, bool, error)
	Put(ctx context.Context, key string, r Record) error
}

// Problem is a validation problem in a record.
type Problem struct {
	Field   string               `json:"field"`
	Problem string               `json:"problem"`
	Code    eventsv1.ProblemCode `json:"code,omitempty"`
}

// Result is what became of one submission.
type Result struct {
	AlertID  string            `json:"alert_id"`
	Outcome  domain.Outcome    `json:"outcome"`
	Problems []Problem         `json:"problems,omitempty"`
	Category eventsv1.Category `json:"category,omitempty"`
}

// Record is the outcome of one accepted message.
type Record struct {
	Results []Result `json:"results"`
}

// Message is one received message with its submissions.
type Message struct {
	// Channel is "hl7", "fhir" or "grpc".
	Channel string
	// Sender identifies the sender within the channel (HL7: the sending
	// facility; FHIR: the tenant; gRPC: the tenant and source system).
	Sender string
	// MessageID is the sender's message id (MSH-10, Bundle identifier or
	// body hash, request message id).
	MessageID   string
	Submissions []domain.Submission
	// Raw is the message as received; it goes into the events for audit,
	// never into logs or spans.
	Raw         []byte
	ContentType string
	// Caller is the sending system's verified identity (its client
	// certificate's, mtls.Identity); "" when it presented none.
	Caller string
	// TenantField names where the message claims its trust ("MSH-4",
	// "tenant", "report.tenant"), for a refusal.
	TenantField string
}

// Sealer seals the patient data of an alert's details (patient, report
// text, raw message) with the trust's key, bound to the alert
// (platform/sealing). On error the details are unchanged and the event must
// not be written.
type Sealer interface {
	Seal(ctx context.Context, trust, alertID string, d *eventsv1.AlertDetails) error
}

// SenderBindings say which sending system may send for which trust
// (package senders).
type SenderBindings interface {
	Allows(identity, trust string) bool
}

// ErrSenderNotBound is the error of a message whose sender is not bound to
// the trust it claims. Transports answer it HL7 AR, FHIR 403, gRPC
// PermissionDenied.
var ErrSenderNotBound = errors.New("sender not bound to the trust")

// SenderError is a refused claim: Field names where the message claimed
// Trust. It wraps ErrSenderNotBound.
type SenderError struct {
	Field, Trust string
}

func (e *SenderError) Error() string {
	return fmt.Sprintf("%s: this sender is not allowed to send for trust %s", e.Field, e.Trust)
}

func (e *SenderError) Unwrap() error { return ErrSenderNotBound }

// SenderClaim is a message's claim to come from a trust, checked by
// CheckSender.
type SenderClaim struct {
	// Channel is "hl7", "fhir" or "grpc".
	Channel string
	// Caller is the sender's verified identity ("" when none).
	Caller string
	// Trust is the trust (ODS code) the message claims, and Field where.
	Trust, Field string
	// MessageID is the sender's message id, for the log.
	MessageID string
}

// Service records received messages. It is safe for concurrent use.
type Service struct {
	dir      *domain.Directory
	limits   domain.Limits
	appender Appender
	outcomes OutcomeStore
	clock    clock.Clock
	log      *slog.Logger
	tracer   trace.Tracer
	producer string
	ids      domain.IDFunc
	messages metric.Int64Counter
	senders  SenderBindings
	refusals metric.Int64Counter
	sealer   Sealer
}

// Options configure a Service.
type Options struct {
	Directory *domain.Directory
	Limits    domain.Limits
	Appender  Appender
	Outcomes  OutcomeStore
	Clock     clock.Clock
	Logger    *slog.Logger
	Telemetry *telemetry.Telemetry
	Producer  string
	IDs       domain.IDFunc
	// Senders binds sending systems to trusts; nil binds nothing and
	// allows every sender (development only: the production profile
	// requires a bindings file).
	Senders SenderBindings
	// Sealer seals patient data before it is appended; nil appends it in
	// clear (development only: the production profile requires keys).
	Sealer Sealer
}

// New returns a Service.
func New(o Options) *Service {
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Telemetry == nil {
		o.Telemetry = telemetry.Nop("intake")
	}
	counter, _ := o.Telemetry.Meter().Int64Counter("herald.intake.messages",
		metric.WithDescription("Messages received by intake, by channel and outcome"))
	refusals, _ := o.Telemetry.Meter().Int64Counter("herald.intake.sender_refusals",
		metric.WithDescription("Messages refused because their sender is not bound to the trust they claim, by channel"))
	return &Service{
		dir: o.Directory, limits: o.Limits, appender: o.Appender, outcomes: o.Outcomes,
		clock: o.Clock, log: o.Logger, tracer: o.Telemetry.Tracer(), producer: o.Producer, ids: o.IDs,
		messages: counter, senders: o.Senders, refusals: refusals, sealer: o.Sealer,
	}
}

// CheckSender refuses a claim to a trust the sender is not bound to: a
// *SenderError (ErrSenderNotBound), counted and logged with the channel,
// the sender's identity, the trust and the message id, nothing of the
// message. Transports call it as soon as they know the trust, before
// anything else is done for the message; Submit checks again.
func (s *Service) CheckSender(ctx context.Context, c SenderClaim) error {
	if s.senders == nil || c.Trust == "" || s.senders.Allows(c.Caller, c.Trust) {
		return nil // no trust claimed: validation names the missing field
	}
	s.refusals.Add(ctx, 1, metric.WithAttributes(attribute.String("channel", c.Channel)))
	s.messages.Add(ctx, 1, metric.WithAttributes(attribute.String("channel", c.Channel), attribute.String("outcome", "sender-not-bound")))
	caller := c.Caller
	if caller == "" {
		caller = "(no client certificate)"
	}
	s.log.WarnContext(ctx, "message refused: sender not bound to the trust it claims", "channel", c.Channel,
		"sender_identity", logSafe(caller), "trust", logSafe(c.Trust), "field", c.Field, "message_id", logSafe(c.MessageID))
	return &SenderError{Field: c.Field, Trust: c.Trust}
}

// Directory returns the tenant directory.
func (s *Service) Directory() *domain.Directory { return s.dir }

// IDs returns the id function.
func (s *Service) IDs() domain.IDFunc { return s.ids }

// Submit records one received message. It returns the original record and
// duplicate=true for a message already accepted; otherwise it decides the
// events of every submission, appends them and returns only once they are
// durable. A message that cannot be identified gives a fault.ErrInvalid
// naming the fields (nothing is appended); a broker failure gives an error
// that is fault.ErrUnavailable (nothing may be assumed appended; a resend
// is safe).
func (s *Service) Submit(ctx context.Context, m Message) (rec Record, duplicate bool, err error) {
	ctx, span := s.tracer.Start(ctx, "intake.receive "+m.Channel, trace.WithSpanKind(trace.SpanKindServer))
	defer func() {
		outcome := "rejected"
		switch {
		case err == nil && duplicate:
			outcome = "duplicate"
		case err == nil:
			outcome = outcomes(rec)
		case errors.Is(err, fault.ErrUnavailable):
			outcome = "unavailable"
		case errors.Is(err, ErrSenderNotBound):
			outcome = "sender-not-bound"
		case !errors.Is(err, fault.ErrInvalid):
			outcome = "error"
		}
		span.SetAttributes(attribute.String("herald.outcome", outcome))
		if err != nil {
			span.SetStatus(codes.Error, outcome)
		}
		span.End()
		if outcome != "sender-not-bound" { // CheckSender counted it
			s.messages.Add(ctx, 1, metric.WithAttributes(attribute.String("channel", m.Channel), attribute.String("outcome", outcome)))
		}
		if outcome == "rejected" {
			r := Rejection{Channel: m.Channel, Sender: m.Sender, MessageID: m.MessageID, Code: "invalid"}
			for _, v := range fault.Violations(err) {
				r.Fields = append(r.Fields, v.Field)
			}
			s.logRejection(ctx, r)
		}
	}()

	for _, sub := range m.Submissions {
		if err := s.CheckSender(ctx, SenderClaim{Channel: m.Channel, Caller: m.Caller, Trust: sub.Tenant, Field: m.TenantField, MessageID: m.MessageID}); err != nil {
			return Record{}, false, err
		}
	}
	key := s.ids("intake-outcome", m.Channel, m.Sender, m.MessageID)
	if s.outcomes != nil {
		got, ok, gerr := s.outcomes.Get(ctx, key)
		switch {
		case gerr != nil:
			s.log.WarnContext(ctx, "outcome store unavailable; processing the message again", "channel", m.Channel, "error", gerr)
		case ok:
			s.annotate(span, m, got)
			return got, true, nil
		}
	}

	now := s.clock.Now()
	var events []*eventsv1.Event
	for _, sub := range m.Submissions {
		dec, derr := domain.Decide(sub, s.dir, s.limits, s.ids, now, s.producer)
		if derr != nil {
			return Record{}, false, derr
		}
		res := Result{AlertID: dec.AlertID, Outcome: dec.Outcome, Category: sub.Details.GetSourceFlag().GetCategory()}
		for _, p := range dec.Problems {
			res.Problems = append(res.Problems, Problem{Field: p.Field, Problem: p.Problem, Code: p.Code})
		}
		rec.Results = append(rec.Results, res)
		if dec.Event == nil {
			continue
		}
		if len(m.Raw) > 0 {
			sub.Details.RawPayload = m.Raw
			sub.Details.RawContentType = m.ContentType
		}
		if err := s.seal(ctx, dec.Event); err != nil {
			return Record{}, false, err
		}
		events = append(events, dec.Event)
	}
	s.annotate(span, m, rec)
	if len(events) > 0 {
		if err := s.appender.Append(ctx, events...); err != nil {
			return Record{}, false, fmt.Errorf("append alert %s: %w", events[0].AlertId, err)
		}
	}
	if s.outcomes != nil {
		if perr := s.outcomes.Put(ctx, key, rec); perr != nil {
			s.log.WarnContext(ctx, "outcome store unavailable; a resend will be appended again (harmless)", "channel", m.Channel, "error", perr)
		}
	}
	for _, r := range rec.Results {
		s.log.InfoContext(ctx, "message recorded", "channel", m.Channel, "alert_id", r.AlertID, "outcome", r.Outcome.String(), "category", r.Category.String())
	}
	return rec, false, nil
}

// seal seals the patient data of an event's details before the event is
// durable, so the log never holds it in clear. A trust without a key or a
// key-encryption key that fails refuses the message as unavailable: the
// sender keeps it and retries, nothing is written in clear.
func (s *Service) seal(ctx context.Context, ev *eventsv1.Event) error {
	if s.sealer == nil {
		return nil
	}
	d := eventtype.Details(ev)
	if d == nil {
		return nil
	}
	if err := s.sealer.Seal(ctx, ev.GetTenant(), ev.GetAlertId(), d); err != nil {
		s.log.ErrorContext(ctx, "patient data could not be sealed; message refused for a retry", "alert_id", ev.GetAlertId(), "tenant", ev.GetTenant(), "error", err)
		return fmt.Errorf("alert %s: %w: %w", ev.GetAlertId(), fault.Unavailable("patient data could not be sealed"), err)
	}
	return nil
}

// Rejection describes a refused message to the operators: which channel
// and sender, the sender's message id, the locations at fault and the code
// the sender was answered with. It holds nothing of what the message says.
type Rejection struct {
	// Channel is "hl7", "fhir" or "grpc".
	Channel string
	// Sender and MessageID are as the sender named them (HL7 MSH-4 and
	// MSH-10, FHIR tenant and Bundle identifier or body hash, gRPC tenant
	// and source message id); empty when the message did not say.
	Sender, MessageID string
	// Fields are the locations at fault: "MSH-9", "DiagnosticReport.status",
	// "report.tenant".
	Fields []string
	// Code is what the sender was told: the HL7 table 0357 code, the HTTP
	// status or the gRPC code.
	Code string
}

// Refused records a message refused before it could be submitted (it did
// not parse, or is not a report): its span and count, with no attributes
// beyond the outcome, and a warning in the log that names the sender and
// the fields at fault (never their values), so that operators see every
// rejection and can find the message at its source.
func (s *Service) Refused(ctx context.Context, r Rejection) {
	_, span := s.tracer.Start(ctx, "intake.receive "+r.Channel, trace.WithSpanKind(trace.SpanKindServer))
	span.SetAttributes(attribute.String("herald.outcome", "rejected"))
	span.SetStatus(codes.Error, "rejected")
	span.End()
	s.messages.Add(ctx, 1, metric.WithAttributes(attribute.String("channel", r.Channel), attribute.String("outcome", "rejected")))
	s.logRejection(ctx, r)
}

// logRejection logs a refused message. Sender and message id come from the
// sender and are cut to printable ASCII and 64 bytes, so that a garbled
// header cannot flood or forge the log.
func (s *Service) logRejection(ctx context.Context, r Rejection) {
	fields := make([]string, 0, len(r.Fields))
	for _, f := range r.Fields {
		fields = append(fields, logSafe(f))
	}
	s.log.WarnContext(ctx, "message rejected", "channel", r.Channel, "outcome", "rejected",
		"sender", logSafe(r.Sender), "message_id", logSafe(r.MessageID), "fields", fields, "code", r.Code)
}

func logSafe(s string) string {
	b := make([]byte, 0, min(len(s), 64))
	for i := 0; i < len(s) && len(b) < 64; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			b = append(b, c)
		} else {
			b = append(b, '?')
		}
	}
	return string(b)
}

// annotate puts the alert ids and source categories on the span: nothing
// else, since everything else in a report may identify a patient.
func (s *Service) annotate(span trace.Span, m Message, rec Record) {
	var ids, cats []string
	for _, r := range rec.Results {
		ids = append(ids, r.AlertID)
		cats = append(cats, r.Category.String())
	}
	span.SetAttributes(
		attribute.String("herald.alert_id", strings.Join(ids, ",")),
		attribute.String("herald.source_category", strings.Join(cats, ",")),
	)
	if len(m.Submissions) > 0 {
		// Only a configured tenant: a refused request's tenant field could
		// hold anything.
		if t, ok := s.dir.Tenant(m.Submissions[0].Tenant); ok {
			span.SetAttributes(attribute.String("herald.tenant", t.ODS))
		}
	}
}

func outcomes(rec Record) string {
	var out []string
	for _, r := range rec.Results {
		out = append(out, r.Outcome.String())
	}
	return strings.Join(out, ",")
}
