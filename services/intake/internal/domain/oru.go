package domain

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/intake/internal/hl7"
)

// HL7Fields names fields in HL7 terms.
var hl7Fields = Fields{Tenant: "MSH-4", MessageID: "MSH-10", Accession: "OBR-3", NHSNumber: "PID-3", Referrer: "ORC-12", ReportText: "OBX-5", Other: "OBR-4"}

// HL7Fields returns the HL7 field names used in problems.
func HL7Fields() Fields { return hl7Fields }

// MessageError is an HL7 message that cannot be taken at all: the sender must
// correct it (ACK AE with an ERR segment naming the field).
type MessageError struct {
	Field   string
	Problem string
	// Code is the HL7 table 0357 error code.
	Code string
}

func (e *MessageError) Error() string { return e.Field + ": " + e.Problem }

// supportedVersions are the HL7 versions intake accepts (MSH-12).
var supportedVersions = map[string]bool{"2.3": true, "2.3.1": true, "2.4": true, "2.5": true, "2.5.1": true}

// MapORU maps an ORU^R01 message to one submission per order group (OBR and
// the OBX/NTE segments after it). The tenant is the trust whose system sent
// the message: MSH-4 (sending facility) looked up in the tenant directory.
// MSH-6 is Herald's own facility, so it says nothing about the tenant.
func MapORU(m *hl7.Message, dir *Directory) ([]Submission, error) {
	msh := m.MSH()
	if msh.Component(9, 1) != "ORU" || msh.Component(9, 2) != "R01" {
		return nil, &MessageError{Field: "MSH-9", Problem: fmt.Sprintf("message type %s^%s is not ORU^R01", clip(msh.Component(9, 1)), clip(msh.Component(9, 2))), Code: "200"}
	}
	if v := msh.Field(12); !supportedVersions[v] {
		return nil, &MessageError{Field: "MSH-12", Problem: fmt.Sprintf("version %q is not 2.3 to 2.5.1", clip(v)), Code: "203"}
	}
	controlID := msh.Field(10)
	if controlID == "" {
		return nil, &MessageError{Field: "MSH-10", Problem: "message control id is required", Code: "101"}
	}
	facility := msh.Component(4, 1)
	tenant, ok := dir.ByFacility(facility)
	if !ok {
		return nil, &MessageError{Field: "MSH-4", Problem: fmt.Sprintf("sending facility %q is not a configured tenant", clip(facility)), Code: "103"}
	}
	latin1 := strings.Contains(msh.Field(18), "8859/1")
	str := func(s string) string { return text(s, latin1) }

	var mapProblems []*eventsv1.ValidationProblem
	patient := &eventsv1.Patient{}
	if pid, ok := m.Segment("PID"); ok {
		for _, cx := range pid.Reps(3) {
			id := Identifier(str(cx.Get(1, 1)), str(cx.Get(4, 1)), str(cx.Get(5, 1)))
			if id == nil {
				continue
			}
			patient.Identifiers = append(patient.Identifiers, id)
			if patient.NhsNumber == "" && (strings.EqualFold(cx.Get(4, 1), "NHS") || cx.Get(5, 1) == "NH") {
				patient.NhsNumber = NormaliseNHSNumber(str(cx.Get(1, 1)))
			}
		}
		patient.FamilyName = str(pid.Get(5, 1, 1, 1))
		patient.GivenName = str(pid.Get(5, 1, 2, 1))
		if dob := pid.Field(7); dob != "" {
			if t, err := ParseHL7Time(dob); err == nil {
				patient.BirthDate = t.Format("2006-01-02")
			} else {
				mapProblems = append(mapProblems, &eventsv1.ValidationProblem{Field: "PID-7", Problem: "date of birth is not an HL7 date", Code: eventsv1.ProblemCode_PROBLEM_CODE_BIRTH_DATE_INVALID})
			}
		}
	}
	encounter := &eventsv1.Encounter{}
	if pv1, ok := m.Segment("PV1"); ok {
		encounter.PatientClass = str(pv1.Field(2))
		loc := pv1.Rep(3, 1)
		encounter.Location = joinNonEmpty("/", str(loc.Get(4, 1)), str(loc.Get(1, 1)), str(loc.Get(2, 1)), str(loc.Get(3, 1)))
	}
	var orderingProvider *eventsv1.Clinician
	if orc, ok := m.Segment("ORC"); ok {
		orderingProvider = xcn(orc.Rep(12, 1), str)
	}

	var subs []Submission
	var cur *Submission
	var codes, flags []string
	var texts []string
	finish := func() {
		if cur == nil {
			return
		}
		cur.Details.ReportText = strings.Join(texts, "\n")
		cur.Details.SourceFlag = tenant.Extract(Signals{AlertCodes: codes, AbnormalFlags: flags, Text: cur.Details.ReportText})
		subs = append(subs, *cur)
		cur, codes, flags, texts = nil, nil, nil, nil
	}
	for _, seg := range m.Segments {
		switch seg.ID {
		case "OBR":
			finish()
			cur = mapOBR(seg, str, tenant.ODS, controlID, msh)
			cur.Details.Patient = patient
			cur.Details.Encounter = encounter
			if orderingProvider != nil {
				cur.Details.Referrer = orderingProvider
			}
			cur.Problems = append(cur.Problems, mapProblems...)
		case "OBX":
			if cur == nil {
				continue
			}
			id := seg.Component(3, 1)
			isAlert := false
			for _, a := range tenant.AlertOBX {
				if strings.EqualFold(a, id) {
					isAlert = true
				}
			}
			if isAlert {
				codes = append(codes, str(seg.Component(5, 1)))
			} else {
				for _, v := range seg.Reps(5) {
					texts = append(texts, str(v.String()))
				}
			}
			for _, v := range seg.Reps(8) {
				flags = append(flags, str(v.Get(1, 1)))
			}
		case "NTE":
			if cur != nil {
				texts = append(texts, str(seg.Field(3)))
			}
		}
	}
	finish()
	if len(subs) == 0 {
		return nil, &MessageError{Field: "OBR", Problem: "no OBR segment: the message carries no report", Code: "100"}
	}
	return subs, nil
}

func mapOBR(obr hl7.Segment, str func(string) string, tenant, controlID string, msh hl7.Segment) *Submission {
	d := &eventsv1.AlertDetails{
		Source:          eventsv1.Source_SOURCE_HL7V2,
		SourceSystem:    joinNonEmpty("@", str(msh.Component(3, 1)), str(msh.Component(4, 1))),
		SourceMessageId: controlID,
		Accession:       str(obr.Component(3, 1)),
		RawContentType:  "x-application/hl7-v2+er7",
	}
	d.ReportReference = joinNonEmpty("^", d.Accession, str(obr.Component(3, 2)))
	exam := obr.Rep(4, 1)
	d.Exam = &eventsv1.Exam{Code: str(exam.Get(1, 1)), Display: str(exam.Get(2, 1)), CodeSystem: str(exam.Get(3, 1)), Modality: str(obr.Field(24))}
	d.Referrer = xcn(obr.Rep(16, 1), str)
	for _, v := range obr.Reps(28) {
		if c := xcn(v, str); c != nil {
			d.CopiesTo = append(d.CopiesTo, c)
		}
	}
	// OBR-32 is NDL: its first component is a CNN in subcomponents.
	interp := obr.Rep(32, 1)
	if id := str(interp.Get(1, 1)); id != "" || interp.Get(1, 2) != "" {
		d.Radiologist = &eventsv1.Clinician{Id: id, DisplayName: joinNonEmpty(" ", str(interp.Get(1, 6)), str(interp.Get(1, 3)), str(interp.Get(1, 2)))}
	}
	s := &Submission{Tenant: tenant, Intent: IntentRaise, Details: d, Fields: hl7Fields}
	if ts := obr.Field(22); ts != "" {
		if t, err := ParseHL7Time(ts); err == nil {
			d.ReportedAt = timestamppb.New(t)
		} else {
			s.Problems = append(s.Problems, &eventsv1.ValidationProblem{Field: "OBR-22", Problem: "report time is not an HL7 timestamp", Code: eventsv1.ProblemCode_PROBLEM_CODE_REPORT_TIME_INVALID})
		}
	}
	switch obr.Field(25) {
	case "P":
		d.ReportStatus = eventsv1.ReportStatus_REPORT_STATUS_PRELIMINARY
	case "F":
		d.ReportStatus = eventsv1.ReportStatus_REPORT_STATUS_FINAL
	case "C":
		d.ReportStatus = eventsv1.ReportStatus_REPORT_STATUS_CORRECTED
		s.Intent = IntentAmend
		s.Reason = "OBR-25 C: corrected result"
	case "X":
		d.ReportStatus = eventsv1.ReportStatus_REPORT_STATUS_CANCELLED
		s.Intent = IntentCancel
		s.Reason = "OBR-25 X: result cancelled"
	}
	return s
}

// xcn maps an XCN (id^family^given^middle^suffix^prefix) to a clinician, or
// nil if it is empty.
func xcn(v hl7.Value, str func(string) string) *eventsv1.Clinician {
	id := str(v.Get(1, 1))
	name := joinNonEmpty(" ", str(v.Get(6, 1)), str(v.Get(3, 1)), str(v.Get(2, 1)))
	if id == "" && name == "" {
		return nil
	}
	return &eventsv1.Clinician{Id: id, DisplayName: name, IdSystem: str(v.Get(9, 1))}
}

// Identifier builds a patient identifier from CX.1, CX.4 and CX.5.
func Identifier(value, authority, typeCode string) *eventsv1.Identifier {
	if value == "" {
		return nil
	}
	system := authority
	if strings.EqualFold(authority, "NHS") || typeCode == "NH" {
		system = "https://fhir.nhs.uk/Id/nhs-number"
	} else if typeCode != "" {
		system = joinNonEmpty("/", authority, typeCode)
	}
	return &eventsv1.Identifier{System: system, Value: value}
}

// ParseHL7Time parses an HL7 DTM (YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]).
// A time without an offset is taken as UTC (Herald's trusts are in England;
// RIS systems send UTC or local time with an offset).
func ParseHL7Time(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	zone := ""
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		s, zone = s[:i], s[i:]
	}
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s = s[:i]
	}
	layouts := map[int]string{4: "2006", 6: "200601", 8: "20060102", 10: "2006010215", 12: "200601021504", 14: "20060102150405"}
	layout, ok := layouts[len(s)]
	if !ok {
		return time.Time{}, fmt.Errorf("HL7 time has %d digits", len(s))
	}
	if zone != "" {
		if len(zone) != 5 {
			return time.Time{}, fmt.Errorf("HL7 time zone %q is not +/-HHMM", zone)
		}
		return time.Parse(layout+"-0700", s+zone)
	}
	return time.Parse(layout, s)
}

func joinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}

// text makes a decoded HL7 value valid UTF-8: ISO 8859-1 messages are
// converted, and any invalid byte of a UTF-8 message becomes U+FFFD, so the
// value can always be recorded.
func text(s string, latin1 bool) string {
	if latin1 {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			b.WriteRune(rune(s[i]))
		}
		return b.String()
	}
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
