package web

import (
	"context"
	"time"
)

// Reporting is what the safety lead's pages need of the reporting read
// model (services/console/internal/reporting, fed from the event log into
// PostgreSQL). The console checks the person's safety-lead role for the
// trust before it asks; the read model answers for exactly the trust and
// the half-open period [From, To) it is given.
type Reporting interface {
	Compliance(ctx context.Context, q ReportQuery) (ComplianceReport, error)
	RCRAudit(ctx context.Context, q ReportQuery) (RCRReport, error)
}

// ReportQuery names a trust and a period [From, To).
type ReportQuery struct {
	Trust    string
	From, To time.Time
}

// ComplianceReport is the compliance of one trust over a period.
type ComplianceReport struct {
	Query ReportQuery
	// ByCategory, ByTeam and ByReferrer are the same measures grouped
	// three ways (Group is the category name, team or referrer id).
	ByCategory []ComplianceRow
	ByTeam     []ComplianceRow
	ByReferrer []ComplianceRow
	// Weeks is the trend: one row per week (Monday 00:00 UTC) in the
	// period, Group the week's start date.
	Weeks []ComplianceRow
	// Breaches counts breached clocks by kind ("communicate",
	// "acknowledge", "action").
	Breaches []Count
	// Declines counts declines by structured reason.
	Declines []Count
	// Failsafe is the alerts that reached the fail-safe queue;
	// Quarantined the messages quarantined at intake.
	Failsafe    int
	Quarantined int
}

// ComplianceRow is one group's figures. Alerts is the denominator (alerts
// raised in the period with an acknowledgement target), AckedInTarget the
// numerator; MedianAck and P90Ack are over acknowledged alerts (zero when
// none).
type ComplianceRow struct {
	Group         string
	Alerts        int
	AckedInTarget int
	Acked         int
	MedianAck     time.Duration
	P90Ack        time.Duration
	Breaches      int
}

// Percent is AckedInTarget / Alerts in percent (0 without alerts).
func (r ComplianceRow) Percent() float64 {
	if r.Alerts == 0 {
		return 0
	}
	return 100 * float64(r.AckedInTarget) / float64(r.Alerts)
}

// Count is a labelled count.
type Count struct {
	Label string
	N     int
}

// RCRReport is the RCR alert-notification audit of one trust over a
// period: per category, the proportion of alerts acknowledged within the
// category's target.
type RCRReport struct {
	Query ReportQuery
	Rows  []RCRRow
}

// RCRRow is one category's standard: Numerator of Denominator alerts were
// acknowledged within Target; Standard is the audit's target proportion
// (e.g. 100 for critical findings). Target and Standard are 0 when the
// read model does not know them (the page says "Not recorded"/"Not set").
type RCRRow struct {
	Category    string
	Target      time.Duration
	Numerator   int
	Denominator int
	Standard    float64
}

// Percent is Numerator / Denominator in percent (0 without alerts).
func (r RCRRow) Percent() float64 {
	if r.Denominator == 0 {
		return 0
	}
	return 100 * float64(r.Numerator) / float64(r.Denominator)
}

// Met reports whether the row meets its standard (false when no standard
// is set: Standard 0).
func (r RCRRow) Met() bool { return r.Standard > 0 && r.Denominator > 0 && r.Percent() >= r.Standard }
