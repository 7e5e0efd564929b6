package domain

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// TenantSettings are one trust's extraction settings: where its sources put
// a coded alert, which abnormal flags count, which phrases in the report text
// are its triggers, and which HL7 sending facilities are its systems.
type TenantSettings struct {
	// ODS is the trust's ODS code, the tenant key.
	ODS string `json:"ods" yaml:"ods"`
	// Facilities are the MSH-4 (sending facility, first component) values
	// this trust's systems send. The ODS code itself always matches.
	Facilities []string `json:"hl7_facilities" yaml:"hl7_facilities"`
	// AlertOBX are the OBX-3 identifiers of a coded alert observation
	// (default ALERTCAT).
	AlertOBX []string `json:"alert_obx" yaml:"alert_obx"`
	// AlertCodes map a source's alert code (OBX-5 of the coded alert, or a
	// FHIR conclusion code) to a category: CRITICAL, URGENT,
	// SIGNIFICANT_UNEXPECTED, CANCER, LOCAL or ROUTINE (no alert). Keys are
	// matched case-insensitively. Default: the CRIS letters C/U/S/R and the
	// category names.
	AlertCodes map[string]string `json:"alert_codes" yaml:"alert_codes"`
	// AbnormalFlags are the OBX-8 / FHIR interpretation codes that flag a
	// report (default AA).
	AbnormalFlags []string `json:"abnormal_flags" yaml:"abnormal_flags"`
	// TriggerPhrases flag a report whose text contains one of them
	// (case-insensitive).
	TriggerPhrases []string `json:"trigger_phrases" yaml:"trigger_phrases"`
	// FHIRServer is the base URL of the trust's FHIR server (https://...),
	// from which intake reads the ServiceRequest that a posted
	// DiagnosticReport is basedOn when the request does not carry it, to
	// find the referrer. Empty: nothing is fetched.
	FHIRServer string `json:"fhir_server" yaml:"fhir_server"`
}

// Routine is the category name of a code that means "no alert".
const Routine = "ROUTINE"

var categoryNames = map[string]eventsv1.Category{
	"CRITICAL":               eventsv1.Category_CATEGORY_CRITICAL,
	"URGENT":                 eventsv1.Category_CATEGORY_URGENT,
	"SIGNIFICANT_UNEXPECTED": eventsv1.Category_CATEGORY_SIGNIFICANT_UNEXPECTED,
	"CANCER":                 eventsv1.Category_CATEGORY_CANCER,
	"LOCAL":                  eventsv1.Category_CATEGORY_LOCAL,
	Routine:                  eventsv1.Category_CATEGORY_UNSPECIFIED,
}

// DefaultAlertCodes are the codes understood when a tenant configures none.
func DefaultAlertCodes() map[string]string {
	return map[string]string{
		"C": "CRITICAL", "CRITICAL": "CRITICAL",
		"U": "URGENT", "URGENT": "URGENT",
		"S": "SIGNIFICANT_UNEXPECTED", "SIGNIFICANT_UNEXPECTED": "SIGNIFICANT_UNEXPECTED", "SIGNIFICANT": "SIGNIFICANT_UNEXPECTED",
		"CANCER": "CANCER",
		"R":      Routine, "ROUTINE": Routine,
	}
}

// withDefaults fills the settings a tenant left unset.
func (t TenantSettings) withDefaults() TenantSettings {
	if t.AlertOBX == nil {
		t.AlertOBX = []string{"ALERTCAT"}
	}
	if t.AlertCodes == nil {
		t.AlertCodes = DefaultAlertCodes()
	}
	if t.AbnormalFlags == nil {
		t.AbnormalFlags = []string{"AA"}
	}
	codes := make(map[string]string, len(t.AlertCodes))
	for k, v := range t.AlertCodes {
		codes[strings.ToUpper(k)] = strings.ToUpper(v)
	}
	t.AlertCodes = codes
	return t
}

// Directory finds a tenant's settings by ODS code or HL7 sending facility.
// It is immutable and safe for concurrent use.
type Directory struct {
	byODS      map[string]TenantSettings
	byFacility map[string]string
}

// NewDirectory validates the tenants' settings and indexes them. The error
// names the tenant and the bad setting.
func NewDirectory(tenants []TenantSettings) (*Directory, error) {
	d := &Directory{byODS: map[string]TenantSettings{}, byFacility: map[string]string{}}
	for i, t := range tenants {
		if !ValidODSCode(t.ODS) {
			return nil, fmt.Errorf("tenants[%d].ods: %q is not an ODS code (3 or 5 upper-case letters or digits)", i, t.ODS)
		}
		if _, dup := d.byODS[t.ODS]; dup {
			return nil, fmt.Errorf("tenants[%d].ods: %s is configured twice", i, t.ODS)
		}
		if t.FHIRServer != "" {
			u, err := url.Parse(t.FHIRServer)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
				return nil, fmt.Errorf("tenants[%d].fhir_server: %q is not an http(s) base URL", i, t.FHIRServer)
			}
		}
		t = t.withDefaults()
		for code, cat := range t.AlertCodes {
			if _, ok := categoryNames[cat]; !ok {
				return nil, fmt.Errorf("tenants[%d].alert_codes[%s]: unknown category %q", i, code, cat)
			}
		}
		d.byODS[t.ODS] = t
		for _, f := range append([]string{t.ODS}, t.Facilities...) {
			f = strings.ToUpper(strings.TrimSpace(f))
			if other, dup := d.byFacility[f]; dup && other != t.ODS {
				return nil, fmt.Errorf("tenants[%d].hl7_facilities: %s already belongs to %s", i, f, other)
			}
			d.byFacility[f] = t.ODS
		}
	}
	return d, nil
}

// Tenant returns the settings of the tenant with this ODS code.
func (d *Directory) Tenant(ods string) (TenantSettings, bool) {
	t, ok := d.byODS[ods]
	return t, ok
}

// ByFacility returns the tenant whose systems send as this HL7 facility.
func (d *Directory) ByFacility(facility string) (TenantSettings, bool) {
	ods, ok := d.byFacility[strings.ToUpper(strings.TrimSpace(facility))]
	if !ok {
		return TenantSettings{}, false
	}
	return d.byODS[ods], true
}

// Signals are what a source said about a report, before extraction.
type Signals struct {
	// AlertCodes are coded alert values (coded alert OBX-5, FHIR conclusion
	// or alert codes).
	AlertCodes []string
	// AbnormalFlags are OBX-8 values or FHIR interpretation codes.
	AbnormalFlags []string
	// Text is the report text searched for trigger phrases.
	Text string
}

// Extract applies the tenant's settings to the signals and returns the
// source flag to record. It decides nothing about the category beyond
// translating the source's own code.
func (t TenantSettings) Extract(s Signals) *eventsv1.SourceFlag {
	flag := &eventsv1.SourceFlag{}
	for _, code := range s.AlertCodes {
		code = strings.TrimSpace(code)
		if code == "" {
			continue
		}
		// An unknown code maps to no category: recorded, the rules decide.
		cat := categoryNames[t.AlertCodes[strings.ToUpper(code)]]
		if flag.Code == "" || flag.Category == eventsv1.Category_CATEGORY_UNSPECIFIED && cat != eventsv1.Category_CATEGORY_UNSPECIFIED {
			flag.Code = code
			flag.Category = cat
		}
	}
	for _, f := range s.AbnormalFlags {
		f = strings.ToUpper(strings.TrimSpace(f))
		if f != "" && f != "N" && !slices.Contains(flag.AbnormalFlags, f) {
			flag.AbnormalFlags = append(flag.AbnormalFlags, f)
		}
	}
	if s.Text != "" {
		upper := strings.ToUpper(s.Text)
		for _, p := range t.TriggerPhrases {
			if p != "" && strings.Contains(upper, strings.ToUpper(p)) {
				flag.TriggerPhrases = append(flag.TriggerPhrases, p)
			}
		}
	}
	return flag
}

// Flagged reports whether the source flagged the report by any signal the
// tenant counts: a coded alert that is not routine, an abnormal flag in the
// tenant's list, or a trigger phrase.
func (t TenantSettings) Flagged(f *eventsv1.SourceFlag) bool {
	if f == nil {
		return false
	}
	if f.Category != eventsv1.Category_CATEGORY_UNSPECIFIED || len(f.TriggerPhrases) > 0 {
		return true
	}
	if f.Code != "" {
		if cat, known := t.AlertCodes[strings.ToUpper(f.Code)]; !known || cat != Routine {
			return true
		}
	}
	for _, a := range f.AbnormalFlags {
		if slices.ContainsFunc(t.AbnormalFlags, func(x string) bool { return strings.EqualFold(x, a) }) {
			return true
		}
	}
	return false
}
