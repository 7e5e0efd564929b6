package e2e

import (
	"strings"
	"testing"
	"time"
)

// A critical finding whose report has a data-quality problem is quarantined
// for the fail-safe team and still reaches its referrer: both get a message
// that says the alert is quarantined and what is missing, without any
// patient data. A quarantined report that names no referrer goes to the
// fail-safe officer alone.
func TestQuarantinedCriticalFindingReachesItsReferrerAndTheFailsafeOfficer(t *testing.T) {
	sys := start(t)
	for _, tc := range []struct {
		name, msg, missing string
	}{
		{
			name:    "bad NHS check digit",
			msg:     strings.Replace(oru("MSG-Q-NHS", "ACC-Q-NHS", "F", "CRITICAL"), "9990000018^^^NHS^NH", "9990000019^^^NHS^NH", 1),
			missing: "the NHS number fails its check digit",
		},
		{
			name:    "no accession",
			msg:     strings.Replace(oru("MSG-Q-ACC", "ACC-Q-ACC", "F", "CRITICAL"), "|ACC-Q-ACC^CRIS|XCHES", "|^CRIS|XCHES", 1),
			missing: "no accession number",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ack := send(t, sys, tc.msg)
			id := quarantinedAlertID(t, ack)
			for _, to := range []string{referrer, failsafe} {
				m := waitMail(t, sys, id, to, 30*time.Second)
				text := strings.ToLower(string(m.Data))
				if !strings.Contains(text, "quarantined") || !strings.Contains(text, strings.ToLower(tc.missing)) {
					t.Errorf("mail to %s does not say it is quarantined and that %q:\n%s", to, tc.missing, m.Data)
				}
				for _, secret := range append(patientData, "9990000019") {
					if strings.Contains(string(m.Data), secret) {
						t.Errorf("mail to %s contains patient data %q", to, secret)
					}
				}
			}
		})
	}

	t.Run("no referrer", func(t *testing.T) {
		msg := oru("MSG-Q-REF", "ACC-Q-REF", "F", "CRITICAL")
		msg = strings.ReplaceAll(msg, "C1234567^REFERRER^SAM^^^DR", "")
		id := quarantinedAlertID(t, send(t, sys, msg))
		m := waitMail(t, sys, id, failsafe, 30*time.Second)
		if !strings.Contains(strings.ToLower(string(m.Data)), "no referrer named") {
			t.Errorf("mail to the fail-safe officer does not say the referrer is missing:\n%s", m.Data)
		}
		if n := len(mailTo(mailsFor(sys, id), referrer)); n != 0 {
			t.Errorf("a report naming no referrer mailed the e2e referrer %d times", n)
		}
	})
	assertNoPatientData(t, sys)
}

// quarantinedAlertID reads the alert id from an ACK that says the report was
// quarantined.
func quarantinedAlertID(t *testing.T, ack string) string {
	t.Helper()
	for _, seg := range strings.Split(ack, "\r") {
		if f := strings.Split(seg, "|"); f[0] == "MSA" && len(f) > 3 {
			if id, ok := strings.CutSuffix(strings.TrimPrefix(f[3], "alert "), " quarantined"); ok {
				return id
			}
		}
	}
	t.Fatalf("ACK does not say quarantined: %q", ack)
	return ""
}
