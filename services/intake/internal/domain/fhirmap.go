package domain

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/samply/golang-fhir-models/fhir-models/fhir"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// FHIR identifier systems.
const (
	SystemNHSNumber = "https://fhir.nhs.uk/Id/nhs-number"
	SystemODSOrg    = "https://fhir.nhs.uk/Id/ods-organization-code"
	SystemODSSite   = "https://fhir.nhs.uk/Id/ods-site-code"
)

var fhirFields = Fields{Tenant: "tenant", MessageID: "Bundle.identifier", Accession: "DiagnosticReport.identifier", NHSNumber: "DiagnosticReport.subject.identifier", Referrer: "ServiceRequest.requester", ReportText: "DiagnosticReport.conclusion", Other: "DiagnosticReport.code"}

// FHIRError is a FHIR request that cannot be taken: it becomes an
// OperationOutcome with a 4xx status. Expression is the FHIRPath of the
// element at fault.
type FHIRError struct {
	Status     int
	Expression string
	Problem    string
}

func (e *FHIRError) Error() string { return e.Expression + ": " + e.Problem }

// resourceHead reads only the resource type.
type resourceHead struct {
	ResourceType string `json:"resourceType"`
}

// Strict decoding targets: the resource plus its resourceType, so unknown
// elements are refused. The samply structs have no "contained" element, so
// the report's is declared here.
type strictDR struct {
	ResourceType string            `json:"resourceType"`
	Contained    []json.RawMessage `json:"contained,omitempty"`
	fhir.OtherDiagnosticReport
}
type strictBundle struct {
	ResourceType string `json:"resourceType"`
	fhir.OtherBundle
}
type strictObservation struct {
	ResourceType string `json:"resourceType"`
	fhir.OtherObservation
}
type strictServiceRequest struct {
	ResourceType string `json:"resourceType"`
	fhir.OtherServiceRequest
}
type strictPatient struct {
	ResourceType string `json:"resourceType"`
	fhir.OtherPatient
}

func decodeStrict(b []byte, v any, what string) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &FHIRError{Status: 400, Expression: what, Problem: "not a valid FHIR R4 " + what + ": " + err.Error()}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &FHIRError{Status: 400, Expression: what, Problem: "trailing data after the resource"}
	}
	return nil
}

// fhirContext is what a Bundle, or the report's contained resources, add
// around the DiagnosticReport.
type fhirContext struct {
	observations []fhir.Observation
	// requests are the Bundle's ServiceRequests in order; requestsByRef
	// finds them, and the contained ones ("#id"), by the references that
	// may point at them (fullUrl, ServiceRequest/id).
	requests      []fhir.ServiceRequest
	requestsByRef map[string]fhir.ServiceRequest
	patients      map[string]fhir.Patient
	// inBundle says whether the report came in a Bundle.
	inBundle bool
}

func (c *fhirContext) addRequest(sr fhir.ServiceRequest, refs ...string) {
	for _, r := range refs {
		if r != "" {
			c.requestsByRef[r] = sr
		}
	}
}

// decodeContained reads the report's contained resources that Herald uses
// (ServiceRequest, Patient), strictly; other resource types are ignored, as
// in a Bundle.
func decodeContained(contained []json.RawMessage, fctx *fhirContext) error {
	for i, raw := range contained {
		where := fmt.Sprintf("DiagnosticReport.contained[%d]", i)
		var h resourceHead
		if err := json.Unmarshal(raw, &h); err != nil {
			return &FHIRError{Status: 400, Expression: where, Problem: "not a resource"}
		}
		switch h.ResourceType {
		case "ServiceRequest":
			var s strictServiceRequest
			if err := decodeStrict(raw, &s, where); err != nil {
				return err
			}
			sr := fhir.ServiceRequest(s.OtherServiceRequest)
			if sr.Id == nil {
				return &FHIRError{Status: 422, Expression: where + ".id", Problem: "a contained resource needs an id to be referenced"}
			}
			fctx.addRequest(sr, "#"+*sr.Id)
		case "Patient":
			var s strictPatient
			if err := decodeStrict(raw, &s, where); err != nil {
				return err
			}
			if p := fhir.Patient(s.OtherPatient); p.Id != nil {
				fctx.patients["#"+*p.Id] = p
			}
		}
	}
	return nil
}

// MapFHIR maps a POSTed DiagnosticReport or a transaction (or collection)
// Bundle holding one DiagnosticReport with its Observations, ServiceRequest
// and Patient, to a submission for tenant. Other resources in a Bundle are
// ignored. The message id is the Bundle identifier if it has one, else
// ids(body): an identical resend is a duplicate.
func MapFHIR(body []byte, tenant string, dir *Directory, ids IDFunc) (Submission, error) {
	var head resourceHead
	if err := json.Unmarshal(body, &head); err != nil {
		return Submission{}, &FHIRError{Status: 400, Expression: "resourceType", Problem: "body is not JSON: " + err.Error()}
	}
	settings, ok := dir.Tenant(tenant)
	if !ok {
		return Submission{}, &FHIRError{Status: 404, Expression: "tenant", Problem: fmt.Sprintf("tenant %q is not configured", clip(tenant))}
	}
	fctx := fhirContext{patients: map[string]fhir.Patient{}, requestsByRef: map[string]fhir.ServiceRequest{}}
	var dr fhir.DiagnosticReport
	var contained []json.RawMessage
	messageID := ""
	switch head.ResourceType {
	case "DiagnosticReport":
		var s strictDR
		if err := decodeStrict(body, &s, "DiagnosticReport"); err != nil {
			return Submission{}, err
		}
		dr = fhir.DiagnosticReport(s.OtherDiagnosticReport)
		contained = s.Contained
	case "Bundle":
		fctx.inBundle = true
		var b strictBundle
		if err := decodeStrict(body, &b, "Bundle"); err != nil {
			return Submission{}, err
		}
		if b.Type != fhir.BundleTypeTransaction && b.Type != fhir.BundleTypeCollection {
			return Submission{}, &FHIRError{Status: 422, Expression: "Bundle.type", Problem: "must be transaction or collection, got " + b.Type.Code()}
		}
		if b.Identifier != nil && b.Identifier.Value != nil {
			messageID = strings.TrimSpace(deref(b.Identifier.System) + "|" + *b.Identifier.Value)
		}
		var found int
		for i, e := range b.Entry {
			var h resourceHead
			if err := json.Unmarshal(e.Resource, &h); err != nil {
				return Submission{}, &FHIRError{Status: 400, Expression: fmt.Sprintf("Bundle.entry[%d].resource", i), Problem: "not a resource"}
			}
			where := fmt.Sprintf("Bundle.entry[%d].resource", i)
			switch h.ResourceType {
			case "DiagnosticReport":
				var s strictDR
				if err := decodeStrict(e.Resource, &s, where); err != nil {
					return Submission{}, err
				}
				dr = fhir.DiagnosticReport(s.OtherDiagnosticReport)
				contained = s.Contained
				found++
			case "Observation":
				var s strictObservation
				if err := decodeStrict(e.Resource, &s, where); err != nil {
					return Submission{}, err
				}
				fctx.observations = append(fctx.observations, fhir.Observation(s.OtherObservation))
			case "ServiceRequest":
				var s strictServiceRequest
				if err := decodeStrict(e.Resource, &s, where); err != nil {
					return Submission{}, err
				}
				sr := fhir.ServiceRequest(s.OtherServiceRequest)
				fctx.requests = append(fctx.requests, sr)
				fctx.addRequest(sr, deref(e.FullUrl))
				if sr.Id != nil {
					fctx.addRequest(sr, "ServiceRequest/"+*sr.Id)
				}
			case "Patient":
				var s strictPatient
				if err := decodeStrict(e.Resource, &s, where); err != nil {
					return Submission{}, err
				}
				p := fhir.Patient(s.OtherPatient)
				if e.FullUrl != nil {
					fctx.patients[*e.FullUrl] = p
				}
				if p.Id != nil {
					fctx.patients["Patient/"+*p.Id] = p
				}
			}
		}
		if found != 1 {
			return Submission{}, &FHIRError{Status: 422, Expression: "Bundle.entry", Problem: fmt.Sprintf("must hold exactly one DiagnosticReport, found %d", found)}
		}
	default:
		return Submission{}, &FHIRError{Status: 422, Expression: "resourceType", Problem: fmt.Sprintf("%q is not DiagnosticReport or Bundle", clip(head.ResourceType))}
	}
	if err := decodeContained(contained, &fctx); err != nil {
		return Submission{}, err
	}
	if messageID == "" {
		messageID = "sha:" + ids(string(body))
	}
	return mapDiagnosticReport(dr, fctx, settings, messageID)
}

func mapDiagnosticReport(dr fhir.DiagnosticReport, fctx fhirContext, t TenantSettings, messageID string) (Submission, error) {
	for i, p := range dr.Performer {
		if p.Identifier != nil && (deref(p.Identifier.System) == SystemODSOrg || deref(p.Identifier.System) == SystemODSSite) {
			v := deref(p.Identifier.Value)
			if !strings.HasPrefix(v, t.ODS) {
				return Submission{}, &FHIRError{Status: 422, Expression: fmt.Sprintf("DiagnosticReport.performer[%d].identifier", i), Problem: fmt.Sprintf("ODS code %q is not tenant %s", clip(v), t.ODS)}
			}
		}
	}
	d := &eventsv1.AlertDetails{
		Source:          eventsv1.Source_SOURCE_FHIR,
		SourceSystem:    "fhir",
		SourceMessageId: messageID,
		RawContentType:  "application/fhir+json",
	}
	s := Submission{Tenant: t.ODS, Intent: IntentRaise, Details: d, Fields: fhirFields}
	for _, id := range dr.Identifier {
		v := strings.TrimSpace(deref(id.Value))
		if v == "" {
			continue
		}
		if d.Accession == "" || strings.Contains(strings.ToLower(deref(id.System)), "accession") {
			d.Accession = v
		}
	}
	if dr.Id != nil {
		d.ReportReference = "DiagnosticReport/" + *dr.Id
	}
	if len(dr.Code.Coding) > 0 {
		c := dr.Code.Coding[0]
		d.Exam = &eventsv1.Exam{Code: deref(c.Code), CodeSystem: deref(c.System), Display: deref(c.Display)}
	} else {
		d.Exam = &eventsv1.Exam{}
	}
	if d.Exam.Display == "" {
		d.Exam.Display = deref(dr.Code.Text)
	}
	for _, c := range dr.Category {
		for _, cd := range c.Coding {
			if d.Exam.Modality == "" {
				d.Exam.Modality = deref(cd.Code)
			}
		}
	}
	patient := &eventsv1.Patient{}
	if dr.Subject != nil {
		if id := dr.Subject.Identifier; id != nil && deref(id.System) == SystemNHSNumber {
			patient.NhsNumber = NormaliseNHSNumber(deref(id.Value))
		}
		if p, ok := fctx.patients[deref(dr.Subject.Reference)]; ok {
			for _, id := range p.Identifier {
				v := deref(id.Value)
				if v == "" {
					continue
				}
				patient.Identifiers = append(patient.Identifiers, &eventsv1.Identifier{System: deref(id.System), Value: v})
				if deref(id.System) == SystemNHSNumber && patient.NhsNumber == "" {
					patient.NhsNumber = NormaliseNHSNumber(v)
				}
			}
			if len(p.Name) > 0 {
				patient.FamilyName = deref(p.Name[0].Family)
				patient.GivenName = strings.Join(p.Name[0].Given, " ")
			}
			patient.BirthDate = deref(p.BirthDate)
		}
	}
	if patient.NhsNumber != "" && len(patient.Identifiers) == 0 {
		patient.Identifiers = []*eventsv1.Identifier{{System: SystemNHSNumber, Value: patient.NhsNumber}}
	}
	d.Patient = patient
	d.Referrer, s.ReferrerProblem, s.BasedOn = referrerOf(dr, fctx)
	if len(dr.ResultsInterpreter) > 0 {
		d.Radiologist = clinicianOf(dr.ResultsInterpreter[0])
	}
	if dr.Issued != nil {
		if ts, err := time.Parse(time.RFC3339, *dr.Issued); err == nil {
			d.ReportedAt = timestamppb.New(ts)
		} else {
			s.Problems = append(s.Problems, &eventsv1.ValidationProblem{Field: "DiagnosticReport.issued", Problem: "not an instant", Code: eventsv1.ProblemCode_PROBLEM_CODE_REPORT_TIME_INVALID})
		}
	}
	switch dr.Status {
	case fhir.DiagnosticReportStatusRegistered:
		// "The existence of the report is registered, but there is nothing
		// yet available" (R4): no finding to alert on.
		s.Intent = IntentNoResult
	case fhir.DiagnosticReportStatusPartial, fhir.DiagnosticReportStatusPreliminary:
		d.ReportStatus = eventsv1.ReportStatus_REPORT_STATUS_PRELIMINARY
	case fhir.DiagnosticReportStatusFinal:
		d.ReportStatus = eventsv1.ReportStatus_REPORT_STATUS_FINAL
	case fhir.DiagnosticReportStatusAmended, fhir.DiagnosticReportStatusCorrected, fhir.DiagnosticReportStatusAppended:
		d.ReportStatus = eventsv1.ReportStatus_REPORT_STATUS_CORRECTED
		s.Intent = IntentAmend
		s.Reason = "DiagnosticReport.status " + dr.Status.Code()
	case fhir.DiagnosticReportStatusCancelled, fhir.DiagnosticReportStatusEnteredInError:
		d.ReportStatus = eventsv1.ReportStatus_REPORT_STATUS_CANCELLED
		s.Intent = IntentCancel
		s.Reason = "DiagnosticReport.status " + dr.Status.Code()
	}

	var sig Signals
	var texts []string
	if dr.Conclusion != nil {
		texts = append(texts, *dr.Conclusion)
	}
	for _, f := range dr.PresentedForm {
		if strings.HasPrefix(deref(f.ContentType), "text/plain") && f.Data != nil {
			if b, err := base64.StdEncoding.DecodeString(*f.Data); err == nil {
				texts = append(texts, string(b))
			}
		}
	}
	for _, cc := range dr.ConclusionCode {
		for _, c := range cc.Coding {
			if _, known := t.AlertCodes[strings.ToUpper(deref(c.Code))]; known {
				sig.AlertCodes = append(sig.AlertCodes, deref(c.Code))
			}
		}
	}
	for _, o := range fctx.observations {
		isAlert := false
		for _, c := range o.Code.Coding {
			for _, a := range t.AlertOBX {
				if strings.EqualFold(a, deref(c.Code)) {
					isAlert = true
				}
			}
		}
		if isAlert && o.ValueCodeableConcept != nil {
			for _, c := range o.ValueCodeableConcept.Coding {
				sig.AlertCodes = append(sig.AlertCodes, deref(c.Code))
			}
		}
		for _, in := range o.Interpretation {
			for _, c := range in.Coding {
				sig.AbnormalFlags = append(sig.AbnormalFlags, deref(c.Code))
			}
		}
		if o.ValueString != nil {
			texts = append(texts, *o.ValueString)
		}
	}
	d.ReportText = text(strings.Join(texts, "\n"), false)
	sig.Text = d.ReportText
	d.SourceFlag = t.Extract(sig)
	return s, nil
}

func clinicianOf(r fhir.Reference) *eventsv1.Clinician {
	c := &eventsv1.Clinician{Id: deref(r.Reference), DisplayName: deref(r.Display)}
	if r.Identifier != nil && r.Identifier.Value != nil {
		c.Id = *r.Identifier.Value
		c.IdSystem = deref(r.Identifier.System)
	}
	if c.Id == "" && c.DisplayName == "" {
		return nil
	}
	return c
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// referrerOf finds the referring clinician of a report: the requester of
// the ServiceRequest it is basedOn, found among the report's contained
// resources ("#id") or in its Bundle (by fullUrl or ServiceRequest/id). A
// Bundle whose report names no ServiceRequest that it carries, but which
// carries exactly one, is taken to carry the order. DiagnosticReport.
// performer is the reporting service, never the referrer, and no extension
// is read.
//
// Without a referrer it says why (for the sender's OperationOutcome and the
// ACK), and returns the basedOn ServiceRequest references that the request
// does not carry, which the trust's FHIR server may resolve.
func referrerOf(dr fhir.DiagnosticReport, fctx fhirContext) (referrer *eventsv1.Clinician, problem string, unresolved []string) {
	var reasons []string
	for i, ref := range dr.BasedOn {
		r := deref(ref.Reference)
		where := fmt.Sprintf("DiagnosticReport.basedOn[%d]", i)
		if r == "" || !isServiceRequestRef(ref, fctx) {
			continue
		}
		sr, ok := fctx.requestsByRef[r]
		switch {
		case !ok && fctx.inBundle:
			unresolved = append(unresolved, r)
			reasons = append(reasons, where+" names a ServiceRequest that is neither contained in the report nor in the Bundle")
		case !ok:
			unresolved = append(unresolved, r)
			reasons = append(reasons, where+" names a ServiceRequest that is not contained in the report")
		case sr.Requester == nil:
			reasons = append(reasons, "the ServiceRequest of "+where+" has no requester")
		default:
			if c := clinicianOf(*sr.Requester); c != nil {
				return c, "", nil
			}
			reasons = append(reasons, "the requester of the ServiceRequest of "+where+" has no reference, identifier or display")
		}
	}
	if len(fctx.requests) == 1 && len(reasons) == len(unresolved) {
		// The Bundle carries one order and the report names none that it
		// carries (or none at all): that order is the report's.
		if sr := fctx.requests[0]; sr.Requester != nil {
			if c := clinicianOf(*sr.Requester); c != nil {
				return c, "", nil
			}
		}
		reasons = append(reasons, "the Bundle's ServiceRequest has no requester")
	}
	if len(reasons) == 0 {
		if fctx.inBundle {
			reasons = append(reasons, "the report has no basedOn ServiceRequest and the Bundle carries none")
		} else {
			reasons = append(reasons, "the report has no basedOn ServiceRequest")
		}
	}
	return nil, "no referrer to notify: " + strings.Join(reasons, "; ") + "; send the ServiceRequest whose requester is the referrer (contained, or in a Bundle with the report)", unresolved
}

// isServiceRequestRef reports whether a basedOn reference may point at a
// ServiceRequest: its type says so, its literal reference is of that type,
// or it is found among the request's ServiceRequests (contained "#id",
// urn:uuid fullUrls).
func isServiceRequestRef(ref fhir.Reference, fctx fhirContext) bool {
	r := deref(ref.Reference)
	if _, ok := fctx.requestsByRef[r]; ok {
		return true
	}
	if t := deref(ref.Type); t != "" {
		return t == "ServiceRequest"
	}
	return strings.HasPrefix(r, "ServiceRequest/") || strings.Contains(r, "/ServiceRequest/")
}

// ApplyServiceRequest gives s the referrer of a ServiceRequest that the
// trust's FHIR server returned for one of s.BasedOn. A body that is not a
// valid ServiceRequest, or one without a requester, leaves s without a
// referrer and says why in its ReferrerProblem, so the report is
// quarantined with the reason.
func ApplyServiceRequest(s *Submission, body []byte) {
	var sr strictServiceRequest
	if err := decodeStrict(body, &sr, "ServiceRequest"); err != nil || sr.ResourceType != "ServiceRequest" {
		ServiceRequestUnavailable(s, "it answered with something that is not a FHIR R4 ServiceRequest")
		return
	}
	if r := sr.Requester; r != nil {
		if c := clinicianOf(*r); c != nil {
			s.Details.Referrer = c
			s.ReferrerProblem = ""
			return
		}
	}
	s.ReferrerProblem = "no referrer to notify: the ServiceRequest that DiagnosticReport.basedOn names, as the trust's FHIR server returned it, has no requester"
}

// ServiceRequestUnavailable records that the ServiceRequest of the report's
// basedOn could not be read from the trust's FHIR server, and why (e.g.
// "HTTP 404", "no answer within 5s"); the why must hold nothing of the
// report.
func ServiceRequestUnavailable(s *Submission, why string) {
	s.ReferrerProblem = "no referrer to notify: the ServiceRequest that DiagnosticReport.basedOn names could not be read from the trust's FHIR server (" + why + "); send it contained in the report or in a Bundle with it"
}

// ServiceRequestID returns the id of a basedOn reference that can be read
// from a FHIR server at base: "ServiceRequest/<id>" or that same path under
// base. ok is false for anything else (contained, urn:uuid, another server,
// a malformed id), which is never fetched.
func ServiceRequestID(ref, base string) (id string, ok bool) {
	rest, found := strings.CutPrefix(ref, strings.TrimRight(base, "/")+"/")
	if !found {
		rest = ref
	}
	id, found = strings.CutPrefix(rest, "ServiceRequest/")
	if !found || !validFHIRID(id) {
		return "", false
	}
	return id, true
}

// validFHIRID reports whether s is a FHIR id: 1 to 64 of A-Z a-z 0-9 - .
func validFHIRID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
