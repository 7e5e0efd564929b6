package domain_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/fault"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/intake/internal/domain"
	"github.com/herald-health/herald/services/intake/internal/hl7"
)

// nhsNumber completes nine digits with their modulus 11 check digit, or
// returns "" if no check digit exists for them.
func nhsNumber(nine string) string {
	sum := 0
	for i := 0; i < 9; i++ {
		sum += int(nine[i]-'0') * (10 - i)
	}
	check := 11 - sum%11
	if check == 11 {
		check = 0
	}
	if check == 10 {
		return ""
	}
	return nine + string(rune('0'+check))
}

func TestValidNHSNumber(t *testing.T) {
	valid := nhsNumber("999000001")
	require.Len(t, valid, 10)
	wrongCheck := valid[:9] + string(rune('0'+(valid[9]-'0'+1)%10))
	tests := []struct {
		give string
		want bool
	}{
		{give: valid, want: true},
		{give: nhsNumber("999000002"), want: true},
		{give: nhsNumber("999000004"), want: true},
		{give: wrongCheck, want: false},
		{give: "999000001", want: false},
		{give: "99900000A8", want: false},
		{give: "", want: false},
		{give: "99900000180", want: false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, domain.ValidNHSNumber(tt.give), "NHS number %q", tt.give)
	}
	// Nine digits whose check would be 10 have no valid NHS number.
	for i := 0; i < 1000; i++ {
		nine := fmt.Sprintf("999000%03d", i)
		full := nhsNumber(nine)
		if full == "" {
			for d := 0; d <= 9; d++ {
				require.False(t, domain.ValidNHSNumber(nine+string(rune('0'+d))))
			}
		} else {
			require.True(t, domain.ValidNHSNumber(full))
		}
	}
	require.Equal(t, "9990000018", domain.NormaliseNHSNumber(" 999 000 0018"))
}

func TestValidODSCode(t *testing.T) {
	for give, want := range map[string]bool{"RXF": true, "RXF05": true, "RZZ": true, "rxf": false, "RX": false, "RXF0": false, "R-F": false, "": false} {
		require.Equal(t, want, domain.ValidODSCode(give), give)
	}
}

func directory(t *testing.T) *domain.Directory {
	t.Helper()
	dir, err := domain.NewDirectory([]domain.TenantSettings{
		{ODS: "RZZ", Facilities: []string{"RZZ", "CRISRZZ"}, TriggerPhrases: []string{"critical alert"}},
		{ODS: "RXF", AlertOBX: []string{"FLAG"}, AlertCodes: map[string]string{"RED": "CRITICAL", "GREEN": "ROUTINE"}, AbnormalFlags: []string{"AA", "HH"}},
	})
	require.NoError(t, err)
	return dir
}

func TestNewDirectoryRejectsBadSettings(t *testing.T) {
	_, err := domain.NewDirectory([]domain.TenantSettings{{ODS: "bad"}})
	require.ErrorContains(t, err, "tenants[0].ods")
	_, err = domain.NewDirectory([]domain.TenantSettings{{ODS: "RZZ", AlertCodes: map[string]string{"X": "PURPLE"}}})
	require.ErrorContains(t, err, "tenants[0].alert_codes[X]")
	_, err = domain.NewDirectory([]domain.TenantSettings{{ODS: "RZZ"}, {ODS: "RXF", Facilities: []string{"RZZ"}}})
	require.ErrorContains(t, err, "already belongs to RZZ")
}

func TestExtractAndFlagged(t *testing.T) {
	dir := directory(t)
	rzz, _ := dir.Tenant("RZZ")
	rxf, _ := dir.Tenant("RXF")
	tests := []struct {
		name        string
		tenant      domain.TenantSettings
		give        domain.Signals
		wantCat     eventsv1.Category
		wantPhrases int
		wantFlagged bool
	}{
		{name: "CRIS letter C is critical", tenant: rzz, give: domain.Signals{AlertCodes: []string{"C"}}, wantCat: eventsv1.Category_CATEGORY_CRITICAL, wantFlagged: true},
		{name: "routine code alone is not flagged", tenant: rzz, give: domain.Signals{AlertCodes: []string{"R"}}, wantFlagged: false},
		{name: "OBX-8 AA flags", tenant: rzz, give: domain.Signals{AbnormalFlags: []string{"AA"}}, wantFlagged: true},
		{name: "HH does not flag where only AA counts", tenant: rzz, give: domain.Signals{AbnormalFlags: []string{"HH"}}, wantFlagged: false},
		{name: "HH flags where the trust counts it", tenant: rxf, give: domain.Signals{AbnormalFlags: []string{"HH"}}, wantFlagged: true},
		{name: "trigger phrase case-insensitive", tenant: rzz, give: domain.Signals{Text: "Impression: CRITICAL ALERT."}, wantPhrases: 1, wantFlagged: true},
		{name: "trust's own code", tenant: rxf, give: domain.Signals{AlertCodes: []string{"red"}}, wantCat: eventsv1.Category_CATEGORY_CRITICAL, wantFlagged: true},
		{name: "unknown code is recorded and flags", tenant: rxf, give: domain.Signals{AlertCodes: []string{"AMBER"}}, wantFlagged: true},
		{name: "nothing said", tenant: rzz, give: domain.Signals{Text: "normal chest"}, wantFlagged: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.tenant.Extract(tt.give)
			require.Equal(t, tt.wantCat, f.Category)
			require.Len(t, f.TriggerPhrases, tt.wantPhrases)
			require.Equal(t, tt.wantFlagged, tt.tenant.Flagged(f))
		})
	}
}

var now = time.Date(2026, 11, 29, 14, 35, 0, 0, time.UTC)

func report(mod func(s *domain.Submission)) domain.Submission {
	s := domain.Submission{
		Tenant: "RZZ",
		Intent: domain.IntentRaise,
		Details: &eventsv1.AlertDetails{
			Source:          eventsv1.Source_SOURCE_GRPC,
			SourceSystem:    "test",
			SourceMessageId: "M1",
			Accession:       "ACC1",
			Patient:         &eventsv1.Patient{NhsNumber: nhsNumber("999000001")},
			Referrer:        &eventsv1.Clinician{Id: "C1234567"},
			SourceFlag:      &eventsv1.SourceFlag{Category: eventsv1.Category_CATEGORY_CRITICAL},
		},
		Fields: domain.Fields{Tenant: "tenant", MessageID: "id", Accession: "accession", NHSNumber: "nhs", Referrer: "referrer", ReportText: "text", Other: "other"},
	}
	if mod != nil {
		mod(&s)
	}
	return s
}

func TestDecide(t *testing.T) {
	dir := directory(t)
	tests := []struct {
		name         string
		give         domain.Submission
		wantOutcome  domain.Outcome
		wantPayload  string
		wantProblems []string
		wantInvalid  []string
	}{
		{name: "complete flagged report is raised", give: report(nil), wantOutcome: domain.OutcomeRaised, wantPayload: "AlertRaised"},
		{name: "bad NHS number quarantines", give: report(func(s *domain.Submission) { s.Details.Patient.NhsNumber = "9990000019" }), wantOutcome: domain.OutcomeQuarantined, wantPayload: "AlertQuarantined", wantProblems: []string{"nhs"}},
		{name: "missing accession and referrer quarantine", give: report(func(s *domain.Submission) { s.Details.Accession = ""; s.Details.Referrer = nil }), wantOutcome: domain.OutcomeQuarantined, wantPayload: "AlertQuarantined", wantProblems: []string{"accession", "referrer"}},
		{name: "unflagged report raises nothing", give: report(func(s *domain.Submission) { s.Details.SourceFlag = nil }), wantOutcome: domain.OutcomeNotFlagged},
		{name: "amendment always recorded", give: report(func(s *domain.Submission) { s.Intent = domain.IntentAmend; s.Details.SourceFlag = nil }), wantOutcome: domain.OutcomeAmended, wantPayload: "AlertAmended"},
		{name: "cancellation", give: report(func(s *domain.Submission) { s.Intent = domain.IntentCancel }), wantOutcome: domain.OutcomeCancelled, wantPayload: "AlertCancelled"},
		{name: "unknown tenant refused", give: report(func(s *domain.Submission) { s.Tenant = "RAA" }), wantInvalid: []string{"tenant"}},
		{name: "malformed tenant refused", give: report(func(s *domain.Submission) { s.Tenant = "rzz" }), wantInvalid: []string{"tenant"}},
		{name: "no message id refused", give: report(func(s *domain.Submission) { s.Details.SourceMessageId = "" }), wantInvalid: []string{"id"}},
		{name: "cancel without accession refused", give: report(func(s *domain.Submission) { s.Intent = domain.IntentCancel; s.Details.Accession = "" }), wantInvalid: []string{"accession"}},
		{name: "oversize text refused", give: report(func(s *domain.Submission) { s.Details.ReportText = strings.Repeat("x", 300<<10) }), wantInvalid: []string{"text"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Given a submission, when intake decides,
			got, err := domain.Decide(tt.give, dir, domain.DefaultLimits(), eventlog.ID, now, "intake")
			if tt.wantInvalid != nil {
				// then an unidentifiable one is refused naming the fields,
				require.ErrorIs(t, err, fault.ErrInvalid)
				var fields []string
				for _, v := range fault.Violations(err) {
					fields = append(fields, v.Field)
				}
				require.Equal(t, tt.wantInvalid, fields)
				return
			}
			require.NoError(t, err)
			// then the outcome and event follow.
			require.Equal(t, tt.wantOutcome, got.Outcome)
			var fields []string
			for _, p := range got.Problems {
				fields = append(fields, p.Field)
			}
			require.Equal(t, tt.wantProblems, fields)
			if tt.wantPayload == "" {
				require.Nil(t, got.Event)
				return
			}
			require.Equal(t, tt.wantPayload, eventlog.TypeOf(got.Event))
			require.Equal(t, got.AlertID, got.Event.AlertId)
			require.Len(t, got.Event.EventId, 32)
			require.Equal(t, "RZZ", got.Event.Tenant)
		})
	}
}

func TestAlertIdentityIsSharedAcrossChannels(t *testing.T) {
	dir := directory(t)
	a, err := domain.Decide(report(nil), dir, domain.DefaultLimits(), eventlog.ID, now, "intake")
	require.NoError(t, err)
	b, err := domain.Decide(report(func(s *domain.Submission) {
		s.Details.Source = eventsv1.Source_SOURCE_FHIR
		s.Details.SourceSystem = "fhir"
		s.Details.SourceMessageId = "other"
	}), dir, domain.DefaultLimits(), eventlog.ID, now, "intake")
	require.NoError(t, err)
	require.Equal(t, eventlog.ID("RZZ", "ACC1", domain.DefaultFinding), a.AlertID)
	require.Equal(t, a.AlertID, b.AlertID)
	require.NotEqual(t, a.Event.EventId, b.Event.EventId, "each source message is its own AlertRaised of the one alert")
	// A resend of the same message is the same event.
	c, err := domain.Decide(report(nil), dir, domain.DefaultLimits(), eventlog.ID, now.Add(time.Minute), "intake")
	require.NoError(t, err)
	require.Equal(t, a.Event.EventId, c.Event.EventId)
}

func readExample(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../../testdata/" + name)
	require.NoError(t, err)
	return b
}

func TestMapORUExample(t *testing.T) {
	m, err := hl7.Parse(readExample(t, "oru_r01_critical_pneumothorax.hl7"))
	require.NoError(t, err)
	subs, err := domain.MapORU(m, directory(t))
	require.NoError(t, err)
	require.Len(t, subs, 1)
	s := subs[0]
	d := s.Details
	require.Equal(t, "RZZ", s.Tenant)
	require.Equal(t, domain.IntentRaise, s.Intent)
	require.Equal(t, "MSG20261129000123", d.SourceMessageId)
	require.Equal(t, "CRIS@RZZ", d.SourceSystem)
	require.Equal(t, "ACC20261129001", d.Accession)
	require.Equal(t, "9990000018", d.Patient.NhsNumber)
	require.Len(t, d.Patient.Identifiers, 2)
	require.Equal(t, "TESTPATIENT", d.Patient.FamilyName)
	require.Equal(t, "1970-01-01", d.Patient.BirthDate)
	require.Equal(t, "E", d.Encounter.PatientClass)
	require.Equal(t, "RZZ01/ED/MAJ/07", d.Encounter.Location)
	require.Equal(t, "C1234567", d.Referrer.Id)
	require.Equal(t, "DR SAM REFERRER", d.Referrer.DisplayName)
	require.Equal(t, "R9876543", d.Radiologist.Id)
	require.Equal(t, "DR JO RADIOLOGIST", d.Radiologist.DisplayName)
	require.Equal(t, "XCHES", d.Exam.Code)
	require.Equal(t, "NICIP", d.Exam.CodeSystem)
	require.Equal(t, "RAD", d.Exam.Modality)
	require.Equal(t, eventsv1.ReportStatus_REPORT_STATUS_FINAL, d.ReportStatus)
	require.Equal(t, eventsv1.Category_CATEGORY_CRITICAL, d.SourceFlag.Category)
	require.Equal(t, "CRITICAL", d.SourceFlag.Code)
	require.Equal(t, []string{"AA"}, d.SourceFlag.AbnormalFlags)
	require.Equal(t, []string{"critical alert"}, d.SourceFlag.TriggerPhrases)
	require.Contains(t, d.ReportText, "Large right pneumothorax")
	require.Contains(t, d.ReportText, "read-back confirmed")
	require.Equal(t, time.Date(2026, 11, 29, 14, 34, 0, 0, time.UTC), d.ReportedAt.AsTime())

	got, err := domain.Decide(s, directory(t), domain.DefaultLimits(), eventlog.ID, now, "intake")
	require.NoError(t, err)
	require.Equal(t, domain.OutcomeRaised, got.Outcome)
}

var baseORU = "MSH|^~\\&|CRIS|RZZ|CRITALERT|REGIONNET|20261129143512||ORU^R01^ORU_R01|M1|P|2.4\r" +
	"PID|1||9990000018^^^NHS^NH||DOE^JO\r" +
	"ORC|RE||||||||||||C1^REF^SAM\r" +
	"OBR|1||ACC1^CRIS|XCHES^XR Chest^NICIP" + strings.Repeat("|", 21) + "F\r" +
	"OBX|1|CE|ALERTCAT^Alert^L|1|U^Urgent^L|||AA\r"

func TestMapORUTable(t *testing.T) {
	tests := []struct {
		name      string
		give      string
		wantField string
		check     func(t *testing.T, subs []domain.Submission)
	}{
		{name: "correction amends", give: strings.Replace(baseORU, "|F\r", "|C\r", 1), check: func(t *testing.T, s []domain.Submission) {
			require.Equal(t, domain.IntentAmend, s[0].Intent)
			require.Equal(t, eventsv1.ReportStatus_REPORT_STATUS_CORRECTED, s[0].Details.ReportStatus)
		}},
		{name: "X cancels", give: strings.Replace(baseORU, "|F\r", "|X\r", 1), check: func(t *testing.T, s []domain.Submission) {
			require.Equal(t, domain.IntentCancel, s[0].Intent)
		}},
		{name: "urgent code", give: baseORU, check: func(t *testing.T, s []domain.Submission) {
			require.Equal(t, eventsv1.Category_CATEGORY_URGENT, s[0].Details.SourceFlag.Category)
		}},
		{name: "facility alias maps tenant", give: strings.Replace(baseORU, "|CRIS|RZZ|", "|CRIS|CRISRZZ^1.2.3^ISO|", 1), check: func(t *testing.T, s []domain.Submission) {
			require.Equal(t, "RZZ", s[0].Tenant)
		}},
		{name: "two order groups give two submissions", give: baseORU + "OBR|2||ACC2" + strings.Repeat("|", 22) + "F\rOBX|1|TX|IMP||CRITICAL ALERT\r", check: func(t *testing.T, s []domain.Submission) {
			require.Len(t, s, 2)
			require.Equal(t, "ACC2", s[1].Details.Accession)
			require.Equal(t, []string{"critical alert"}, s[1].Details.SourceFlag.TriggerPhrases)
			require.Empty(t, s[1].Details.SourceFlag.AbnormalFlags)
		}},
		{name: "escaped text decoded", give: baseORU + "OBX|2|TX|RPT||size 3\\S\\4 cm \\T\\ growing|||\r", check: func(t *testing.T, s []domain.Submission) {
			require.Contains(t, s[0].Details.ReportText, "size 3^4 cm & growing")
		}},
		{name: "latin-1 converted", give: strings.Replace(baseORU, "|P|2.4\r", "|P|2.4|||||GBR|8859/1\r", 1) + "OBX|2|TX|RPT||caf\xe9\r", check: func(t *testing.T, s []domain.Submission) {
			require.Contains(t, s[0].Details.ReportText, "café")
		}},
		{name: "not ORU", give: strings.Replace(baseORU, "ORU^R01^ORU_R01", "ADT^A01", 1), wantField: "MSH-9"},
		{name: "unsupported version", give: strings.Replace(baseORU, "|P|2.4\r", "|P|2.2\r", 1), wantField: "MSH-12"},
		{name: "no control id", give: strings.Replace(baseORU, "|M1|", "||", 1), wantField: "MSH-10"},
		{name: "unknown facility", give: strings.Replace(baseORU, "|CRIS|RZZ|", "|CRIS|NOPE|", 1), wantField: "MSH-4"},
		{name: "no OBR", give: strings.Split(baseORU, "OBR|")[0], wantField: "OBR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := hl7.Parse([]byte(tt.give))
			require.NoError(t, err)
			subs, err := domain.MapORU(m, directory(t))
			if tt.wantField != "" {
				var me *domain.MessageError
				require.ErrorAs(t, err, &me)
				require.Equal(t, tt.wantField, me.Field)
				return
			}
			require.NoError(t, err)
			tt.check(t, subs)
		})
	}
}

func TestMapFHIRExamples(t *testing.T) {
	dir := directory(t)
	s, err := domain.MapFHIR(readExample(t, "diagnosticreport_critical.json"), "RZZ", dir, eventlog.ID)
	require.NoError(t, err)
	require.Equal(t, "ACC20261129001", s.Details.Accession)
	require.Equal(t, "9990000018", s.Details.Patient.NhsNumber)
	require.Equal(t, []string{"critical alert"}, s.Details.SourceFlag.TriggerPhrases)
	require.True(t, strings.HasPrefix(s.Details.SourceMessageId, "sha:"))

	b, err := domain.MapFHIR(readExample(t, "bundle_critical_alert.json"), "RZZ", dir, eventlog.ID)
	require.NoError(t, err)
	require.Equal(t, []string{"AA"}, b.Details.SourceFlag.AbnormalFlags)

	// The same report through HL7 and FHIR is one alert.
	m, err := hl7.Parse(readExample(t, "oru_r01_critical_pneumothorax.hl7"))
	require.NoError(t, err)
	h, err := domain.MapORU(m, dir)
	require.NoError(t, err)
	dh, err := domain.Decide(h[0], dir, domain.DefaultLimits(), eventlog.ID, now, "intake")
	require.NoError(t, err)
	df, err := domain.Decide(s, dir, domain.DefaultLimits(), eventlog.ID, now, "intake")
	require.NoError(t, err)
	require.Equal(t, dh.AlertID, df.AlertID)
}

func TestMapFHIRErrors(t *testing.T) {
	dir := directory(t)
	tests := []struct {
		name, give, tenant, wantExpr string
		wantStatus                   int
	}{
		{name: "not JSON", give: "<xml/>", tenant: "RZZ", wantExpr: "resourceType", wantStatus: 400},
		{name: "wrong resource", give: `{"resourceType":"Patient"}`, tenant: "RZZ", wantExpr: "resourceType", wantStatus: 422},
		{name: "unknown element", give: `{"resourceType":"DiagnosticReport","status":"final","code":{},"bogus":1}`, tenant: "RZZ", wantExpr: "DiagnosticReport", wantStatus: 400},
		{name: "bad status", give: `{"resourceType":"DiagnosticReport","status":"nope","code":{}}`, tenant: "RZZ", wantExpr: "DiagnosticReport", wantStatus: 400},
		{name: "unknown tenant", give: `{"resourceType":"DiagnosticReport","status":"final","code":{}}`, tenant: "RAA", wantExpr: "tenant", wantStatus: 404},
		{name: "bundle without report", give: `{"resourceType":"Bundle","type":"transaction","entry":[]}`, tenant: "RZZ", wantExpr: "Bundle.entry", wantStatus: 422},
		{name: "searchset bundle", give: `{"resourceType":"Bundle","type":"searchset"}`, tenant: "RZZ", wantExpr: "Bundle.type", wantStatus: 422},
		{name: "performer of another trust", give: `{"resourceType":"DiagnosticReport","status":"final","code":{},"performer":[{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"RXF"}}]}`, tenant: "RZZ", wantExpr: "DiagnosticReport.performer[0].identifier", wantStatus: 422},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := domain.MapFHIR([]byte(tt.give), tt.tenant, dir, eventlog.ID)
			var fe *domain.FHIRError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, tt.wantExpr, fe.Expression)
			require.Equal(t, tt.wantStatus, fe.Status)
		})
	}
}

func FuzzMapORU(f *testing.F) {
	b, err := os.ReadFile("../../testdata/oru_r01_critical_pneumothorax.hl7")
	require.NoError(f, err)
	f.Add(b)
	f.Add([]byte(baseORU))
	dir, err := domain.NewDirectory([]domain.TenantSettings{{ODS: "RZZ", TriggerPhrases: []string{"critical alert"}}})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := hl7.Parse(data)
		if err != nil {
			return
		}
		subs, err := domain.MapORU(m, dir)
		if err != nil {
			return
		}
		for _, s := range subs {
			dec, err := domain.Decide(s, dir, domain.DefaultLimits(), eventlog.ID, now, "intake")
			if err != nil {
				continue
			}
			if dec.Event != nil {
				// Whatever came in, the event can be recorded.
				if _, err := proto.Marshal(dec.Event); err != nil {
					t.Fatalf("event does not marshal: %v", err)
				}
			}
		}
	})
}

// BenchmarkParseAndMapORU is the CPU cost of one HL7 message up to the
// event: parse, map, decide.
func BenchmarkParseAndMapORU(b *testing.B) {
	data, err := os.ReadFile("../../testdata/oru_r01_critical_pneumothorax.hl7")
	require.NoError(b, err)
	dir, err := domain.NewDirectory([]domain.TenantSettings{{ODS: "RZZ", TriggerPhrases: []string{"critical alert"}}})
	require.NoError(b, err)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := hl7.Parse(data)
		if err != nil {
			b.Fatal(err)
		}
		subs, err := domain.MapORU(m, dir)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := domain.Decide(subs[0], dir, domain.DefaultLimits(), eventlog.ID, now, "intake"); err != nil {
			b.Fatal(err)
		}
	}
}
