package console

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/herald-health/herald/services/console/internal/reporting"
	"github.com/herald-health/herald/services/console/internal/web"
)

// storeReports gives the safety lead's pages (web.Reporting) the figures of
// the PostgreSQL read model (reporting.Store), field for field:
//
//   - a row's Alerts is the store's Due (the denominator: not cancelled,
//     with a target, acknowledged or past it), AckedInTarget its InTime,
//     so the page's percentage is the store's PercentInTime;
//   - a row's Breaches is the breached clocks of its alerts (communicate +
//     acknowledge + action), the figures of the "breaches by clock" table;
//   - the RCR row's Target and Standard are not in the store (the target
//     depends on the policy in force when each alert was routed; no
//     standard is configured): they stay zero and the page says so.
type storeReports struct{ store *reporting.Store }

// Compliance implements web.Reporting.
func (r storeReports) Compliance(ctx context.Context, q web.ReportQuery) (web.ComplianceReport, error) {
	c, err := r.store.Compliance(ctx, q.Trust, q.From, q.To)
	if err != nil {
		return web.ComplianceReport{}, err
	}
	o := c.Overall
	return web.ComplianceReport{
		Query:      q,
		ByCategory: complianceRows(c.ByCategory),
		ByTeam:     complianceRows(c.ByTeam),
		ByReferrer: complianceRows(c.ByReferrer),
		Weeks:      complianceRows(c.Weekly),
		Breaches: []web.Count{
			{Label: "communicate", N: o.BreachesCommunicate},
			{Label: "acknowledge", N: o.BreachesAcknowledge},
			{Label: "action", N: o.BreachesAction},
		},
		Declines:    counts(o.Declines),
		Failsafe:    o.FailsafeQueued,
		Quarantined: o.Quarantined,
	}, nil
}

// RCRAudit implements web.Reporting.
func (r storeReports) RCRAudit(ctx context.Context, q web.ReportQuery) (web.RCRReport, error) {
	rep, err := r.store.RCRReport(ctx, q.Trust, q.From, q.To)
	if err != nil {
		return web.RCRReport{}, err
	}
	out := web.RCRReport{Query: q}
	for _, row := range rep.Rows {
		out.Rows = append(out.Rows, web.RCRRow{Category: row.Category, Numerator: row.Numerator, Denominator: row.Denominator})
	}
	return out, nil
}

// notRecorded names the group of alerts the store holds without that key
// (never routed, or no team or referrer in the message).
const notRecorded = "Not recorded"

func complianceRows(rows []reporting.Row) []web.ComplianceRow {
	out := make([]web.ComplianceRow, 0, len(rows))
	for _, r := range rows {
		g := r.Key
		if g == "" {
			g = notRecorded
		}
		out = append(out, web.ComplianceRow{
			Group: g, Alerts: r.Due, AckedInTarget: r.InTime, Acked: r.Acknowledged,
			MedianAck: r.MedianAck, P90Ack: r.P90Ack,
			Breaches: r.BreachesCommunicate + r.BreachesAcknowledge + r.BreachesAction,
		})
	}
	return out
}

func counts(m map[string]int) []web.Count {
	out := make([]web.Count, 0, len(m))
	for label, n := range m {
		out = append(out, web.Count{Label: label, N: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Label < out[j].Label })
	return out
}

// Search implements web.History: the store's search of one trust.
func (r storeReports) Search(ctx context.Context, q web.SearchQuery) (web.SearchResult, error) {
	page, err := r.store.Search(ctx, reporting.SearchQuery{Tenant: q.Trust, Accession: q.Accession, Reference: q.Reference,
		From: q.From, To: q.To, Limit: q.Limit, Cursor: q.Cursor})
	if err != nil {
		return web.SearchResult{}, err
	}
	out := web.SearchResult{Next: page.NextCursor}
	for _, s := range page.Alerts {
		out.Alerts = append(out.Alerts, summary(s))
	}
	return out, nil
}

// AlertHistory implements web.History: the summary and every event.
func (r storeReports) AlertHistory(ctx context.Context, trust, alertID string) (web.AlertHistory, error) {
	sum, err := r.store.Alert(ctx, trust, alertID)
	if errors.Is(err, reporting.ErrNotFound) {
		return web.AlertHistory{}, web.ErrNoHistory
	}
	if err != nil {
		return web.AlertHistory{}, err
	}
	evs, err := r.store.Timeline(ctx, trust, alertID)
	if errors.Is(err, reporting.ErrNotFound) {
		return web.AlertHistory{}, web.ErrNoHistory
	}
	if err != nil {
		return web.AlertHistory{}, err
	}
	out := web.AlertHistory{Summary: summary(sum)}
	for _, e := range evs {
		out.Events = append(out.Events, web.HistoryEvent{EventID: e.EventID, Type: e.Type, At: e.OccurredAt,
			ActorID: e.ActorID, Name: e.ActorName, Role: e.ActorRole, Provider: e.ActorIdentityProvider,
			Recipient: e.RecipientID, Channel: e.Channel, NotificationID: e.NotificationID, Delivery: e.Delivery,
			Step: e.Step, Repeat: e.Repeat, Reason: e.Reason, Clock: e.Clock, PolicyID: e.PolicyID, PolicyVersion: e.PolicyVersion})
	}
	return out, nil
}

func summary(s reporting.Summary) web.AlertSummary {
	at := func(t *time.Time) time.Time {
		if t == nil {
			return time.Time{}
		}
		return *t
	}
	return web.AlertSummary{ID: s.AlertID, Trust: s.Tenant, Reference: s.Reference, Accession: s.Accession,
		Category: s.Category, State: s.State, PolicyID: s.PolicyID, PolicyVersion: s.PolicyVersion,
		RaisedAt: s.RaisedAt, AcknowledgedAt: at(s.AcknowledgedAt), ClosedAt: at(s.ClosedAt)}
}

var (
	_ web.Reporting = storeReports{}
	_ web.History   = storeReports{}
)
