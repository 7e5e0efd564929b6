package domain

import (
	"fmt"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/fault"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// Intent is what the source asks for.
type Intent int

// Intents (zero is unspecified).
const (
	IntentRaise Intent = iota + 1
	IntentAmend
	IntentCancel
	// IntentNoResult: the report exists but has no result yet (FHIR
	// status registered), so there is nothing to alert on.
	IntentNoResult
)

// Outcome is what intake did with a submission.
type Outcome int

// Outcomes (zero is unspecified).
const (
	// OutcomeRaised: AlertRaised appended.
	OutcomeRaised Outcome = iota + 1
	// OutcomeQuarantined: AlertQuarantined appended (incomplete flagged report).
	OutcomeQuarantined
	// OutcomeAmended: AlertAmended appended.
	OutcomeAmended
	// OutcomeCancelled: AlertCancelled appended.
	OutcomeCancelled
	// OutcomeNotFlagged: a report nobody flagged; accepted, no alert.
	OutcomeNotFlagged
	// OutcomeNoResult: a report without a result yet (FHIR registered);
	// accepted, no alert.
	OutcomeNoResult
)

// String names the outcome for logs, spans and metrics (it carries no
// patient data).
func (o Outcome) String() string {
	switch o {
	case OutcomeRaised:
		return "raised"
	case OutcomeQuarantined:
		return "quarantined"
	case OutcomeAmended:
		return "amended"
	case OutcomeCancelled:
		return "cancelled"
	case OutcomeNotFlagged:
		return "not_flagged"
	case OutcomeNoResult:
		return "no_result"
	}
	return "unspecified"
}

// Fields names, in the vocabulary of one channel, the places a problem can
// be: "PID-3" for HL7, "subject.identifier" for FHIR, "report.patient" for
// gRPC. Problems and errors use these names so the sender can find them.
type Fields struct {
	Tenant, MessageID, Accession, NHSNumber, Referrer, ReportText, Other string
}

// Submission is a report as one channel received it, in the common shape.
type Submission struct {
	Tenant  string
	Intent  Intent
	Details *eventsv1.AlertDetails
	// Reason of an amendment or cancellation, if the source gave one.
	Reason string
	// Problems found while mapping (e.g. an unreadable date), kept with the
	// validation problems.
	Problems []*eventsv1.ValidationProblem
	Fields   Fields
	// ReferrerProblem says, in the channel's terms, why the mapping found no
	// referrer; empty for the generic "no referrer to notify".
	ReferrerProblem string
	// BasedOn are the FHIR basedOn ServiceRequest references that the
	// request does not carry: the trust's FHIR server may resolve them (see
	// ApplyServiceRequest).
	BasedOn []string
}

// Limits bound what one submission may carry.
type Limits struct {
	// MaxField is the longest identifier or name, in bytes.
	MaxField int
	// MaxText is the longest report text, in bytes.
	MaxText int
}

// DefaultLimits are generous for real reports and small enough to protect
// Kafka (1 MiB records by default).
func DefaultLimits() Limits { return Limits{MaxField: 256, MaxText: 256 << 10} }

// Decision is the event to append for a submission, or none.
type Decision struct {
	Outcome  Outcome
	AlertID  string
	Event    *eventsv1.Event
	Problems []*eventsv1.ValidationProblem
	Category eventsv1.Category
}

// Decide validates a submission and chooses its event. A submission that
// cannot be identified (no or malformed tenant, no message id, unknown
// tenant, oversize fields, a cancellation without accession) is refused with
// fault.Invalid naming the fields. An incomplete flagged report becomes
// AlertQuarantined with its problems. A report nobody flagged gives
// OutcomeNotFlagged and no event. Identity: alert id = ids(tenant, accession,
// finding); event ids are derived from the alert id, the kind and the
// source's message, so a resend yields the same event; the same finding
// raised through two channels is one alert.
func Decide(s Submission, dir *Directory, lim Limits, ids IDFunc, now time.Time, producer string) (Decision, error) {
	d := s.Details
	if d == nil {
		d = &eventsv1.AlertDetails{}
		s.Details = d
	}
	f := s.Fields
	var bad []fault.Violation
	tenant, tenantOK := dir.Tenant(s.Tenant)
	switch {
	case s.Tenant == "":
		bad = append(bad, fault.Violation{Field: f.Tenant, Problem: "tenant is required"})
	case !ValidODSCode(s.Tenant):
		bad = append(bad, fault.Violation{Field: f.Tenant, Problem: fmt.Sprintf("%q is not an ODS code (3 or 5 upper-case letters or digits)", clip(s.Tenant))})
	case !tenantOK:
		bad = append(bad, fault.Violation{Field: f.Tenant, Problem: fmt.Sprintf("tenant %s is not configured", s.Tenant)})
	}
	if d.SourceMessageId == "" {
		bad = append(bad, fault.Violation{Field: f.MessageID, Problem: "message id is required (the duplicate key)"})
	}
	if s.Intent == IntentCancel && d.Accession == "" {
		bad = append(bad, fault.Violation{Field: f.Accession, Problem: "accession is required to cancel"})
	}
	bad = append(bad, sizeViolations(s, lim)...)
	if s.Intent < IntentRaise || s.Intent > IntentNoResult {
		bad = append(bad, fault.Violation{Field: f.Other, Problem: "unknown intent"})
	}
	if len(bad) > 0 {
		return Decision{}, fault.Invalid("report refused", bad...)
	}

	finding := d.FindingCode
	if finding == "" {
		finding = DefaultFinding
		d.FindingCode = finding
	}
	accessionKey := d.Accession
	problems := append([]*eventsv1.ValidationProblem(nil), s.Problems...)
	if d.Accession == "" {
		// Without an accession the message id stands in, so the report is
		// still one alert and a resend is still the same alert.
		accessionKey = "msg:" + d.SourceSystem + ":" + d.SourceMessageId
		problems = append(problems, &eventsv1.ValidationProblem{Field: f.Accession, Problem: "accession is missing", Code: eventsv1.ProblemCode_PROBLEM_CODE_ACCESSION_MISSING})
	}
	alertID := ids(s.Tenant, accessionKey, finding)
	ev := &eventsv1.Event{
		AlertId:       alertID,
		Tenant:        s.Tenant,
		OccurredAt:    timestamppb.New(now),
		Producer:      producer,
		SchemaVersion: 1,
		CausationId:   d.SourceMessageId,
	}
	dec := Decision{AlertID: alertID, Event: ev, Category: d.GetSourceFlag().GetCategory()}

	if s.Intent == IntentCancel {
		ev.EventId = ids(alertID, "cancelled", d.SourceSystem, d.SourceMessageId)
		ev.Payload = &eventsv1.Event_AlertCancelled{AlertCancelled: &eventsv1.AlertCancelled{SourceMessageId: d.SourceMessageId, Reason: s.Reason}}
		dec.Outcome = OutcomeCancelled
		return dec, nil
	}

	problems = append(problems, contentProblems(d, f, s.ReferrerProblem)...)
	if s.Intent == IntentAmend {
		// An amendment is recorded whatever it says: it may withdraw or
		// downgrade a flag, and the rules service decides what that means.
		ev.EventId = ids(alertID, "amended", d.SourceSystem, d.SourceMessageId)
		ev.Payload = &eventsv1.Event_AlertAmended{AlertAmended: &eventsv1.AlertAmended{Details: d, Reason: s.Reason}}
		dec.Outcome = OutcomeAmended
		dec.Problems = problems
		return dec, nil
	}
	if s.Intent == IntentNoResult {
		// Whatever its text says, a report with nothing available yet is
		// not a finding: the preliminary or final report raises the alert.
		return Decision{Outcome: OutcomeNoResult, AlertID: alertID}, nil
	}
	if !tenant.Flagged(d.SourceFlag) {
		return Decision{Outcome: OutcomeNotFlagged, AlertID: alertID}, nil
	}
	if len(problems) > 0 {
		ev.EventId = ids(alertID, "quarantined", d.SourceSystem, d.SourceMessageId)
		ev.Payload = &eventsv1.Event_AlertQuarantined{AlertQuarantined: &eventsv1.AlertQuarantined{Details: d, Problems: problems}}
		dec.Outcome = OutcomeQuarantined
		dec.Problems = problems
		return dec, nil
	}
	// One AlertRaised per source message: a resend is the same event, which
	// consumers skip by id. The same finding reported again under another
	// message (another channel, the final after a preliminary) is a new
	// AlertRaised of the same alert: the rules service routes it again only
	// if it upgrades the category, and the lifecycle records it.
	ev.EventId = ids(alertID, "raised", d.SourceSystem, d.SourceMessageId)
	ev.Payload = &eventsv1.Event_AlertRaised{AlertRaised: &eventsv1.AlertRaised{Details: d}}
	dec.Outcome = OutcomeRaised
	return dec, nil
}

// contentProblems are the gaps that quarantine a flagged report: the patient
// or the responsible clinician cannot be identified.
func contentProblems(d *eventsv1.AlertDetails, f Fields, referrerProblem string) []*eventsv1.ValidationProblem {
	var out []*eventsv1.ValidationProblem
	nhs := d.GetPatient().GetNhsNumber()
	switch {
	case nhs == "":
		out = append(out, &eventsv1.ValidationProblem{Field: f.NHSNumber, Problem: "no NHS number", Code: eventsv1.ProblemCode_PROBLEM_CODE_NHS_NUMBER_MISSING})
	case !ValidNHSNumber(nhs):
		out = append(out, &eventsv1.ValidationProblem{Field: f.NHSNumber, Problem: "NHS number fails the modulus 11 check", Code: eventsv1.ProblemCode_PROBLEM_CODE_NHS_NUMBER_INVALID})
	}
	if d.GetReferrer().GetId() == "" && d.GetReferrer().GetDisplayName() == "" {
		if referrerProblem == "" {
			referrerProblem = "no referrer to notify"
		}
		out = append(out, &eventsv1.ValidationProblem{Field: f.Referrer, Problem: referrerProblem, Code: eventsv1.ProblemCode_PROBLEM_CODE_REFERRER_MISSING})
	}
	return out
}

func sizeViolations(s Submission, lim Limits) []fault.Violation {
	if lim.MaxField <= 0 {
		lim = DefaultLimits()
	}
	d := s.Details
	f := s.Fields
	var bad []fault.Violation
	check := func(field, v string, max int) {
		if len(v) > max {
			bad = append(bad, fault.Violation{Field: field, Problem: fmt.Sprintf("longer than %d bytes", max)})
		} else if !utf8.ValidString(v) {
			bad = append(bad, fault.Violation{Field: field, Problem: "not valid UTF-8"})
		}
	}
	check(f.Tenant, s.Tenant, lim.MaxField)
	check(f.MessageID, d.SourceMessageId, lim.MaxField)
	check(f.Accession, d.Accession, lim.MaxField)
	check(f.Other, d.FindingCode, lim.MaxField)
	check(f.NHSNumber, d.GetPatient().GetNhsNumber(), lim.MaxField)
	check(f.Referrer, d.GetReferrer().GetId(), lim.MaxField)
	check(f.ReportText, d.ReportText, lim.MaxText)
	return bad
}

func clip(s string) string {
	if len(s) > 16 {
		return s[:16] + "..."
	}
	return s
}

// HL7ErrorCode is the HL7 table 0357 code of a data-quality problem, for
// the ERR segment that reports it: 101 (required field missing) for what is
// absent, 102 (data type error) for a value that is present but wrong, such
// as an NHS number whose check digit fails.
func HL7ErrorCode(c eventsv1.ProblemCode) string {
	switch c {
	case eventsv1.ProblemCode_PROBLEM_CODE_NHS_NUMBER_INVALID,
		eventsv1.ProblemCode_PROBLEM_CODE_REPORT_TIME_INVALID,
		eventsv1.ProblemCode_PROBLEM_CODE_BIRTH_DATE_INVALID:
		return "102"
	}
	return "101"
}
