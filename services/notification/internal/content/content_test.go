package content

import (
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/notification/internal/domain"
)

// Synthetic patient: a computed test-range NHS number (999 000 001 8 passes
// the modulus 11 check) and made-up name and date of birth.
const (
	nhsNumber = "9990000018"
	family    = "Zzyzxtestpatient"
	given     = "Quorvina"
	birthDate = "1937-02-03"
	report    = "Large tension pneumothorax on the left"
)

func syntheticAlert(t *testing.T, cat eventsv1.Category) domain.Alert {
	t.Helper()
	return syntheticAlertOf(t, cat, false)
}

// syntheticAlertOf builds the alert from AlertRaised, or from
// AlertQuarantined (with problems whose texts carry the patient's data, as
// a careless intake might) when quarantined.
func syntheticAlertOf(t *testing.T, cat eventsv1.Category, quarantined bool) domain.Alert {
	t.Helper()
	details := &eventsv1.AlertDetails{
		Patient:    &eventsv1.Patient{NhsNumber: nhsNumber, FamilyName: family, GivenName: given, BirthDate: birthDate},
		ReportText: report,
		Referrer:   &eventsv1.Clinician{Id: "G1234567", DisplayName: "Dr Referrer"},
	}
	first := &eventsv1.Event{EventId: "e1", AlertId: "0f3a9c2b7d1e4f5a8b6c0d2e4f6a8b0c", Tenant: "RZZ",
		Payload: &eventsv1.Event_AlertRaised{AlertRaised: &eventsv1.AlertRaised{Details: details}}}
	if quarantined {
		first.Payload = &eventsv1.Event_AlertQuarantined{AlertQuarantined: &eventsv1.AlertQuarantined{Details: details, Problems: []*eventsv1.ValidationProblem{
			{Field: "PID-3", Problem: "NHS number " + nhsNumber + " of " + family + " fails the check", Code: eventsv1.ProblemCode_PROBLEM_CODE_NHS_NUMBER_INVALID},
			{Field: "OBR-3", Problem: "accession is missing", Code: eventsv1.ProblemCode_PROBLEM_CODE_ACCESSION_MISSING},
		}}}
	}
	var a domain.Alert
	a, _ = domain.Apply(a, first)
	a, _ = domain.Apply(a, &eventsv1.Event{EventId: "e2", AlertId: a.ID, Tenant: "RZZ",
		Payload: &eventsv1.Event_AlertRouted{AlertRouted: &eventsv1.AlertRouted{
			Category: cat, LocalCategory: "Local-X",
			Clocks: &eventsv1.Clocks{AcknowledgeBy: timestamppb.New(time.Date(2026, 11, 29, 16, 15, 0, 0, time.UTC))},
			Policy: &eventsv1.EscalationPolicy{FailsafeQueue: "rzz-failsafe", Steps: []*eventsv1.EscalationStep{{}}},
		}}})
	return a
}

var channels = []eventsv1.Channel{
	eventsv1.Channel_CHANNEL_EMAIL, eventsv1.Channel_CHANNEL_SMS, eventsv1.Channel_CHANNEL_TEAMS,
	eventsv1.Channel_CHANNEL_WEBHOOK, eventsv1.Channel_CHANNEL_LOG,
}

var categories = []eventsv1.Category{
	eventsv1.Category_CATEGORY_CRITICAL, eventsv1.Category_CATEGORY_URGENT, eventsv1.Category_CATEGORY_SIGNIFICANT_UNEXPECTED,
	eventsv1.Category_CATEGORY_CANCER, eventsv1.Category_CATEGORY_LOCAL,
}

func requireNoPatientData(t *testing.T, s string) {
	t.Helper()
	for _, bad := range []string{nhsNumber, "999 000 0018", family, given, birthDate, "03/02/1937", report, "Dr Referrer"} {
		require.NotContains(t, s, bad)
	}
}

// Every template, every channel, every category and kind (normal, repeat,
// fail-safe, test) is rendered for an alert built from events that carry a
// synthetic patient; no output may contain the patient's data.
func TestEveryTemplateCarriesNoPatientData(t *testing.T) {
	r := NewRenderer(nil)
	names, err := EmbeddedNames()
	require.NoError(t, err)
	require.NotEmpty(t, names)
	rendered := map[string]bool{}
	for _, ch := range channels {
		for _, cat := range categories {
			for _, kind := range []struct {
				name                        string
				repeat                      uint32
				failsafe, test, quarantined bool
				breach                      string
				digest                      bool
			}{{"first", 0, false, false, false, "", false}, {"repeat", 2, false, false, false, "", false}, {"failsafe", 0, true, false, false, "", false},
				{"test", 0, false, true, false, "", false}, {"quarantined", 0, false, false, true, "", false}, {"quarantined repeat", 1, false, false, true, "", false},
				{"quarantined failsafe", 0, true, false, true, "", false}, {"failsafe reminder", 3, true, false, false, "", false},
				{"breach", 0, false, false, false, "acknowledge", false}, {"digest", 1, false, false, true, "", true}} {
				a := syntheticAlertOf(t, cat, kind.quarantined)
				d := FromAlert(a, "HRD-0F3A-9C2B-7D1E", 0, kind.repeat, kind.failsafe, "https://herald.example/ack/tok123")
				d.Test = kind.test
				d.Breach = kind.breach
				if kind.digest {
					other := FromAlert(syntheticAlertOf(t, eventsv1.Category_CATEGORY_URGENT, false), "HRD-1111-2222-3333", 1, 0, true, "https://herald.example/ack/tok456")
					d = Data{Digest: []Data{d, other}}
				}
				m, err := r.Render(ch, d)
				require.NoError(t, err, "channel %s category %s kind %s", ch, cat, kind.name)
				requireNoPatientData(t, m.Subject+m.Body)
				if ch != eventsv1.Channel_CHANNEL_LOG {
					require.Contains(t, m.Body, "RZZ", "trust in body of %s %s %s", ch, cat, kind.name)
				}
				if ch != eventsv1.Channel_CHANNEL_LOG && !kind.test {
					require.Contains(t, m.Body, "https://herald.example/ack/tok123", "ack link in %s %s %s", ch, cat, kind.name)
					require.Contains(t, m.Body, d.Reference)
				}
				for _, n := range Names(d) {
					rendered[ChannelKey(ch)+"/"+n] = true
				}
			}
		}
	}
	for _, n := range names {
		require.True(t, rendered[n[0]+"/"+n[1]], "embedded template %s/%s was never rendered", n[0], n[1])
	}
}

// A quarantined alert's message says so, and says what is missing in fixed
// words, on every channel a person reads.
func TestQuarantineMessageSaysItIsQuarantinedAndWhatIsMissing(t *testing.T) {
	a := syntheticAlertOf(t, eventsv1.Category_CATEGORY_CRITICAL, true)
	r := NewRenderer(nil)
	for _, ch := range []eventsv1.Channel{eventsv1.Channel_CHANNEL_EMAIL, eventsv1.Channel_CHANNEL_SMS, eventsv1.Channel_CHANNEL_TEAMS, eventsv1.Channel_CHANNEL_WEBHOOK} {
		m, err := r.Render(ch, FromAlert(a, "HRD-0F3A-9C2B-7D1E", 0, 0, false, "https://h/ack/x"))
		require.NoError(t, err)
		text := strings.ToLower(m.Subject + m.Body)
		require.Contains(t, text, "quarantined", ch.String())
		require.Contains(t, text, "the nhs number fails its check digit", ch.String())
		require.Contains(t, text, "no accession number", ch.String())
		requireNoPatientData(t, m.Subject+m.Body)
	}
	// A complete report of the same finding ends the quarantine wording.
	a, _ = domain.Apply(a, &eventsv1.Event{EventId: "e3", AlertId: a.ID, Tenant: "RZZ",
		Payload: &eventsv1.Event_AlertRaised{AlertRaised: &eventsv1.AlertRaised{Details: &eventsv1.AlertDetails{}}}})
	m, err := r.Render(eventsv1.Channel_CHANNEL_EMAIL, FromAlert(a, "HRD-0F3A-9C2B-7D1E", 0, 0, false, "https://h/ack/x"))
	require.NoError(t, err)
	require.NotContains(t, strings.ToLower(m.Subject+m.Body), "quarantined")
}

func TestRenderCriticalEmail(t *testing.T) {
	a := syntheticAlert(t, eventsv1.Category_CATEGORY_CRITICAL)
	m, err := NewRenderer(nil).Render(eventsv1.Channel_CHANNEL_EMAIL, FromAlert(a, "HRD-0F3A-9C2B-7D1E", 0, 0, false, "https://h/ack/x"))
	require.NoError(t, err)
	require.Equal(t, "CRITICAL imaging result: action needed now, ref HRD-0F3A-9C2B-7D1E (RZZ)", m.Subject)
	require.Contains(t, m.Body, "Acknowledge by: 2026-11-29 16:15 UTC")
}

func TestTrustOverride(t *testing.T) {
	over := fstest.MapFS{
		"RZZ/sms/critical.tmpl":  {Data: []byte(`{{define "body"}}RZZ custom {{.Ref}} {{.AckLink}}{{end}}`)},
		"RZZ/email/default.tmpl": {Data: []byte(`{{define "subject"}}S {{.Ref}}{{end}}{{define "body"}}B {{.Category}}{{end}}`)},
		"RXF/sms/critical.tmpl":  {Data: []byte(`{{define "body"}}{{.Nope}}{{end}}`)},
	}
	r := NewRenderer(over)
	a := syntheticAlert(t, eventsv1.Category_CATEGORY_CRITICAL)
	tests := []struct {
		name   string
		tenant string
		ch     eventsv1.Channel
		cat    eventsv1.Category
		want   string
	}{
		{"given a trust override then it wins", "RZZ", eventsv1.Channel_CHANNEL_SMS, eventsv1.Category_CATEGORY_CRITICAL, "RZZ custom HRD-0F3A-9C2B-7D1E https://h/ack/x\n"},
		{"given the trust overrides default only then the embedded critical wins", "RZZ", eventsv1.Channel_CHANNEL_EMAIL, eventsv1.Category_CATEGORY_CRITICAL, ""},
		{"given the trust overrides default then it is used for other categories", "RZZ", eventsv1.Channel_CHANNEL_EMAIL, eventsv1.Category_CATEGORY_URGENT, "B Urgent\n"},
		{"given another trust then embedded", "RYY", eventsv1.Channel_CHANNEL_SMS, eventsv1.Category_CATEGORY_CRITICAL, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.Tenant, a.Category = tt.tenant, tt.cat
			m, err := r.Render(tt.ch, FromAlert(a, "HRD-0F3A-9C2B-7D1E", 0, 0, false, "https://h/ack/x"))
			require.NoError(t, err)
			if tt.want == "" {
				require.True(t, strings.HasPrefix(m.Body, "Herald CRITICAL") || strings.HasPrefix(m.Body, "A CRITICAL"), "got %q", m.Body)
				return
			}
			require.Equal(t, tt.want, m.Body)
		})
	}
	a.Tenant, a.Category = "RXF", eventsv1.Category_CATEGORY_CRITICAL
	_, err := r.Render(eventsv1.Channel_CHANNEL_SMS, FromAlert(a, "HRD-0F3A-9C2B-7D1E", 0, 0, false, "x"))
	require.ErrorContains(t, err, "RXF/sms/critical.tmpl", "a broken override is an error naming the file")
}
