// Package domain holds intake's decisions, free of transports: validation of
// NHS numbers and ODS codes, the per-tenant extraction settings, the mapping
// of HL7 v2 ORU^R01 messages and FHIR R4 resources to one submission shape,
// and the choice of event (raised, quarantined, amended, cancelled) with its
// deterministic ids.
//
// Intake records what the source said; the rules service decides the
// category. A flagged report that is incomplete is quarantined, never
// rejected; only a message that cannot be identified at all (no tenant, no
// message id) or is not a report is refused, so the sender can correct it.
package domain

import (
	"strings"
)

// IDFunc derives a deterministic id from its parts (eventlog.ID in
// production). The same parts always give the same id.
type IDFunc func(parts ...string) string

// DefaultFinding is the finding code of a report that does not name one:
// one alert per accession, so the same report through any channel is one
// alert.
const DefaultFinding = "report"

// ValidNHSNumber reports whether s is a 10-digit NHS number whose check digit
// passes the modulus 11 algorithm. The 999 test range passes like any other.
func ValidNHSNumber(s string) bool {
	if len(s) != 10 {
		return false
	}
	sum := 0
	for i := 0; i < 10; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return false
		}
		if i < 9 {
			sum += int(c-'0') * (10 - i)
		}
	}
	check := 11 - sum%11
	switch check {
	case 11:
		check = 0
	case 10:
		return false
	}
	return int(s[9]-'0') == check
}

// NormaliseNHSNumber removes the spaces and dashes of a displayed NHS number
// (3-3-4).
func NormaliseNHSNumber(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, strings.TrimSpace(s))
}

// ValidODSCode reports whether s has the shape of an ODS organisation code
// as Herald keys tenants: 3 characters for a trust (RXF) or 5 for a site
// (RXF05), upper-case letters and digits, starting with a letter or digit.
func ValidODSCode(s string) bool {
	if len(s) != 3 && len(s) != 5 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
