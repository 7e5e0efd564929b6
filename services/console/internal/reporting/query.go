package reporting

import (
	"context"
	"encoding/base64"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/herald-health/herald/platform/fault"
	"github.com/jackc/pgx/v5"
)

// ErrNotFound: no alert with that id in that trust.
var ErrNotFound = errors.New("alert not found in the reporting store")

// SearchQuery selects alerts of one trust. Tenant is required; the other
// fields narrow the search when set. From/To bound the raise time
// [From, To).
type SearchQuery struct {
	Tenant    string
	Accession string
	Reference string
	From, To  time.Time
	// Limit per page (default 50, at most 500); Cursor continues after the
	// last page's NextCursor.
	Limit  int
	Cursor string
}

// SearchPage is one page of results, newest raised first.
type SearchPage struct {
	Alerts     []Summary
	NextCursor string // "" on the last page
}

// Search finds alerts by accession, reference and raise time within a trust.
func (s *Store) Search(ctx context.Context, q SearchQuery) (SearchPage, error) {
	if q.Tenant == "" {
		return SearchPage{}, fault.Invalid("search alerts", fault.Violation{Field: "tenant", Problem: "is required"})
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return SearchPage{}, fault.Invalid("search alerts", fault.Violation{Field: "to", Problem: "must be after from"})
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 500)
	where := []string{"tenant = $1"}
	args := []any{q.Tenant}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if q.Accession != "" {
		add("accession = ?", q.Accession)
	}
	if q.Reference != "" {
		add("reference = ?", strings.ToUpper(strings.TrimSpace(q.Reference)))
	}
	if !q.From.IsZero() {
		add("raised_at >= ?", q.From)
	}
	if !q.To.IsZero() {
		add("raised_at < ?", q.To)
	}
	if q.Cursor != "" {
		at, id, err := decodeCursor(q.Cursor)
		if err != nil {
			return SearchPage{}, fault.Invalid("search alerts", fault.Violation{Field: "cursor", Problem: "is not a cursor this store issued"})
		}
		args = append(args, at, id)
		where = append(where, fmt.Sprintf("(raised_at, alert_id) < ($%d, $%d)", len(args)-1, len(args)))
	}
	args = append(args, limit+1)
	rows, err := s.pool.Query(ctx, `SELECT `+summaryColumns+` FROM alerts WHERE `+strings.Join(where, " AND ")+
		` ORDER BY raised_at DESC, alert_id DESC LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return SearchPage{}, unavailable("search alerts", err)
	}
	list, err := pgx.CollectRows(rows, scanSummary)
	if err != nil {
		return SearchPage{}, unavailable("search alerts", err)
	}
	page := SearchPage{Alerts: list}
	if len(list) > limit {
		page.Alerts = list[:limit]
		last := page.Alerts[limit-1]
		page.NextCursor = encodeCursor(last.RaisedAt, last.AlertID)
	}
	return page, nil
}

func encodeCursor(t time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(t.UnixMicro(), 10) + ":" + id))
}

func decodeCursor(c string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", err
	}
	us, id, ok := strings.Cut(string(b), ":")
	n, err := strconv.ParseInt(us, 10, 64)
	if !ok || err != nil || id == "" {
		return time.Time{}, "", errors.New("bad cursor")
	}
	return time.UnixMicro(n).UTC(), id, nil
}

// Alert returns one alert's summary, if it belongs to tenant.
func (s *Store) Alert(ctx context.Context, tenant, alertID string) (Summary, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+summaryColumns+` FROM alerts WHERE tenant = $1 AND alert_id = $2`, tenant, alertID)
	if err != nil {
		return Summary{}, unavailable("read alert", err)
	}
	sum, err := pgx.CollectExactlyOneRow(rows, scanSummary)
	if errors.Is(err, pgx.ErrNoRows) {
		return Summary{}, ErrNotFound
	}
	if err != nil {
		return Summary{}, unavailable("read alert", err)
	}
	return sum, nil
}

// Timeline returns every event of an alert of tenant in log order: the
// governance timeline (who, when, delivery states, policy version).
func (s *Store) Timeline(ctx context.Context, tenant, alertID string) ([]Event, error) {
	evs, err := queryEvents(ctx, s.pool, `WHERE alert_id = $1 AND tenant = $2 ORDER BY log_partition, log_offset`, alertID, tenant)
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, ErrNotFound
	}
	return evs, nil
}

// Figures are the compliance figures of a set of alerts (all the trust's
// alerts raised in the period, or one category, team, referrer or week of
// them).
//
//   - Alerts: raised in the period (cancelled ones included; Cancelled
//     counts them).
//   - Due: not cancelled, with an acknowledge-by deadline, and decided at
//     the time of the query: acknowledged, or past the deadline. Pending
//     are those not yet decided (open, deadline ahead).
//   - InTime: of Due, acknowledged at or before the deadline (the
//     category's target in the policy in force when it was routed); Late:
//     acknowledged after it; Unacknowledged: past it and never
//     acknowledged. InTime + Late + Unacknowledged = Due.
//     PercentInTime = 100 * InTime / Due (NaN when Due is 0).
//   - Acknowledged: every acknowledged alert of the period.
//   - MedianAck, P90Ack: time from the start of the clocks to the first
//     acknowledgement, over acknowledged alerts (continuous percentiles,
//     PostgreSQL's percentile_cont); 0 when none.
//   - Breaches of each clock (alerts with an SLABreached of it), FailsafeQueued,
//     Quarantined, Cancelled: alert counts.
//   - Declines: decline events by reason.
type Figures struct {
	Alerts, Due, InTime, Late, Unacknowledged, Pending, Acknowledged int
	PercentInTime                                                    float64
	MedianAck, P90Ack                                                time.Duration
	BreachesCommunicate, BreachesAcknowledge                         int
	BreachesAction                                                   int
	FailsafeQueued, Quarantined, Cancelled                           int
	Declines                                                         map[string]int
}

// Row is the figures of one group (a category, team, referrer or week).
type Row struct {
	Key string // category, team id, referrer id, or the week's Monday (2006-01-02)
	Figures
}

// Compliance is a trust's compliance over [From, To).
type Compliance struct {
	Tenant   string
	From, To time.Time
	AsOf     time.Time
	Overall  Figures
	// Rows by key, sorted by key.
	ByCategory, ByTeam, ByReferrer, Weekly []Row
}

// complianceSQL computes every group in one scan of the trust's period
// (grouping sets over the covering index alerts_tenant_raised).
const complianceSQL = `
SELECT GROUPING(category) AS gc, GROUPING(team_id) AS gt, GROUPING(referrer_id) AS gr, GROUPING(week) AS gw,
	coalesce(category, ''), coalesce(team_id, ''), coalesce(referrer_id, ''), coalesce(to_char(week, 'YYYY-MM-DD'), ''),
	count(*),
	count(*) FILTER (WHERE due),
	count(*) FILTER (WHERE due AND acknowledged_at <= acknowledge_by),
	count(*) FILTER (WHERE due AND acknowledged_at > acknowledge_by),
	count(*) FILTER (WHERE due AND acknowledged_at IS NULL),
	count(*) FILTER (WHERE NOT due AND cancelled_at IS NULL AND acknowledge_by IS NOT NULL),
	count(*) FILTER (WHERE acknowledged_at IS NOT NULL),
	coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY ack_seconds), 0),
	coalesce(percentile_cont(0.9) WITHIN GROUP (ORDER BY ack_seconds), 0),
	count(*) FILTER (WHERE breached_communicate),
	count(*) FILTER (WHERE breached_acknowledge),
	count(*) FILTER (WHERE breached_action),
	count(*) FILTER (WHERE failsafe_queued_at IS NOT NULL),
	count(*) FILTER (WHERE quarantined),
	count(*) FILTER (WHERE cancelled_at IS NOT NULL)
FROM (
	SELECT category, team_id, referrer_id, acknowledged_at, acknowledge_by, cancelled_at, ack_seconds,
		breached_communicate, breached_acknowledge, breached_action, failsafe_queued_at, quarantined,
		date_trunc('week', raised_at AT TIME ZONE 'UTC') AS week,
		(cancelled_at IS NULL AND acknowledge_by IS NOT NULL AND (acknowledged_at IS NOT NULL OR acknowledge_by <= $4)) AS due
	FROM alerts WHERE tenant = $1 AND raised_at >= $2 AND raised_at < $3
) a
GROUP BY GROUPING SETS ((), (category), (team_id), (referrer_id), (week))`

// declinesSQL counts decline events by reason per group.
const declinesSQL = `
SELECT GROUPING(category), GROUPING(team_id), GROUPING(referrer_id), GROUPING(week),
	coalesce(category, ''), coalesce(team_id, ''), coalesce(referrer_id, ''), coalesce(to_char(week, 'YYYY-MM-DD'), ''),
	reason, count(*)
FROM (
	SELECT category, team_id, referrer_id, date_trunc('week', raised_at AT TIME ZONE 'UTC') AS week, reason
	FROM alerts, unnest(declined_reasons) AS reason
	WHERE tenant = $1 AND raised_at >= $2 AND raised_at < $3 AND cardinality(declined_reasons) > 0
) d
GROUP BY GROUPING SETS ((reason), (category, reason), (team_id, reason), (referrer_id, reason), (week, reason))`

// complianceFromRows computes Compliance from the alerts table row by row
// (exact percentiles): the answer the rollups must give (the tests' and
// the benchmark's reference). It costs about 3 µs of database CPU per alert
// in the period.
func (s *Store) complianceFromRows(ctx context.Context, tenant string, from, to time.Time) (*Compliance, error) {
	if tenant == "" {
		return nil, fault.Invalid("compliance", fault.Violation{Field: "tenant", Problem: "is required"})
	}
	if from.IsZero() || to.IsZero() || !from.Before(to) {
		return nil, fault.Invalid("compliance", fault.Violation{Field: "period", Problem: "needs from before to"})
	}
	asOf := s.now()
	c := &Compliance{Tenant: tenant, From: from.UTC(), To: to.UTC(), AsOf: asOf}
	rows, err := s.pool.Query(ctx, complianceSQL, tenant, from, to, asOf)
	if err != nil {
		return nil, unavailable("compliance", err)
	}
	groups := map[[2]string]*Figures{}
	for rows.Next() {
		var gc, gt, gr, gw int32
		var cat, team, ref, week string
		var f Figures
		var med, p90 float64
		if err := rows.Scan(&gc, &gt, &gr, &gw, &cat, &team, &ref, &week, &f.Alerts, &f.Due, &f.InTime, &f.Late, &f.Unacknowledged, &f.Pending, &f.Acknowledged,
			&med, &p90, &f.BreachesCommunicate, &f.BreachesAcknowledge, &f.BreachesAction, &f.FailsafeQueued, &f.Quarantined, &f.Cancelled); err != nil {
			rows.Close()
			return nil, unavailable("compliance", err)
		}
		f.MedianAck, f.P90Ack = seconds(med), seconds(p90)
		f.PercentInTime = percent(f.InTime, f.Due)
		g := group(gc, gt, gr, gw, cat, team, ref, week)
		groups[g] = &f
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("compliance", err)
	}
	rows, err = s.pool.Query(ctx, declinesSQL, tenant, from, to)
	if err != nil {
		return nil, unavailable("compliance declines", err)
	}
	for rows.Next() {
		var gc, gt, gr, gw int32
		var cat, team, ref, week, reason string
		var n int
		if err := rows.Scan(&gc, &gt, &gr, &gw, &cat, &team, &ref, &week, &reason, &n); err != nil {
			rows.Close()
			return nil, unavailable("compliance declines", err)
		}
		if f := groups[group(gc, gt, gr, gw, cat, team, ref, week)]; f != nil {
			if f.Declines == nil {
				f.Declines = map[string]int{}
			}
			f.Declines[reason] = n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("compliance declines", err)
	}
	for g, f := range groups {
		c.place(g, *f)
	}
	c.sortRows()
	return c, nil
}

// group names a grouping-set row: which grouping (by GROUPING() bits:
// 0 means grouped by that column) and its key.
func group(gc, gt, gr, gw int32, cat, team, ref, week string) [2]string {
	switch {
	case gc == 0:
		return [2]string{"category", cat}
	case gt == 0:
		return [2]string{"team", team}
	case gr == 0:
		return [2]string{"referrer", ref}
	case gw == 0:
		return [2]string{"week", week}
	}
	return [2]string{"", ""}
}

func seconds(s float64) time.Duration { return time.Duration(math.Round(s * float64(time.Second))) }

func percent(n, d int) float64 {
	if d == 0 {
		return math.NaN()
	}
	return 100 * float64(n) / float64(d)
}

// RCRRow is one category's line of the audit: the RCR standard that alerts
// are acknowledged within the category's target.
type RCRRow struct {
	Category          string
	Numerator         int     // acknowledged within the target
	Denominator       int     // due: acknowledged, or past the target, and not cancelled
	Percent           float64 // NaN when Denominator is 0
	Pending           int     // open, target not yet reached (not in the denominator)
	Late              int     // acknowledged after the target
	NotAcknowledged   int     // past the target and never acknowledged
	MedianAck, P90Ack time.Duration
	FailsafeQueued    int
}

// RCRReport is the RCR-style audit of a trust over a period.
type RCRReport struct {
	Tenant   string
	From, To time.Time
	AsOf     time.Time
	Rows     []RCRRow // by category
	Total    RCRRow   // every category
}

// RCRReport returns the audit of tenant over [from, to): per category, the
// numerator and denominator of alerts acknowledged in time.
func (s *Store) RCRReport(ctx context.Context, tenant string, from, to time.Time) (*RCRReport, error) {
	c, err := s.compliance(ctx, tenant, from, to, categoryGroups)
	if err != nil {
		return nil, err
	}
	row := func(cat string, f Figures) RCRRow {
		return RCRRow{Category: cat, Numerator: f.InTime, Denominator: f.Due, Percent: f.PercentInTime, Pending: f.Pending,
			Late: f.Late, NotAcknowledged: f.Unacknowledged,
			MedianAck: f.MedianAck, P90Ack: f.P90Ack, FailsafeQueued: f.FailsafeQueued}
	}
	r := &RCRReport{Tenant: tenant, From: c.From, To: c.To, AsOf: c.AsOf, Total: row("ALL", c.Overall)}
	for _, g := range c.ByCategory {
		if g.Key == "" {
			continue // never routed (quarantined or not yet classified): no target to measure
		}
		r.Rows = append(r.Rows, row(g.Key, g.Figures))
	}
	return r, nil
}

// WriteCSV writes the audit as CSV: a header, one line per category, and a
// total line.
func (r *RCRReport) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"trust", "from", "to", "as_of", "category", "numerator_acknowledged_in_time", "denominator_due",
		"percent_in_time", "pending", "acknowledged_late", "not_acknowledged", "median_minutes_to_acknowledge",
		"p90_minutes_to_acknowledge", "failsafe_queued"})
	for _, row := range append(append([]RCRRow(nil), r.Rows...), r.Total) {
		pct := ""
		if !math.IsNaN(row.Percent) {
			pct = strconv.FormatFloat(row.Percent, 'f', 1, 64)
		}
		_ = cw.Write([]string{r.Tenant, r.From.Format(time.RFC3339), r.To.Format(time.RFC3339), r.AsOf.Format(time.RFC3339),
			row.Category, strconv.Itoa(row.Numerator), strconv.Itoa(row.Denominator), pct, strconv.Itoa(row.Pending),
			strconv.Itoa(row.Late), strconv.Itoa(row.NotAcknowledged), minutes(row.MedianAck), minutes(row.P90Ack),
			strconv.Itoa(row.FailsafeQueued)})
	}
	cw.Flush()
	return cw.Error()
}

func minutes(d time.Duration) string { return strconv.FormatFloat(d.Minutes(), 'f', 1, 64) }

// place puts the figures of one grouping-set row (g: the grouping, "" for
// the overall figures, and its key) where the report shows them.
func (c *Compliance) place(g [2]string, f Figures) {
	r := Row{Key: g[1], Figures: f}
	switch g[0] {
	case "":
		c.Overall = f
	case "category":
		c.ByCategory = append(c.ByCategory, r)
	case "team":
		c.ByTeam = append(c.ByTeam, r)
	case "referrer":
		c.ByReferrer = append(c.ByReferrer, r)
	case "week":
		c.Weekly = append(c.Weekly, r)
	}
}

// sortRows orders each breakdown by its key.
func (c *Compliance) sortRows() {
	for _, rs := range [][]Row{c.ByCategory, c.ByTeam, c.ByReferrer, c.Weekly} {
		sort.Slice(rs, func(i, j int) bool { return rs[i].Key < rs[j].Key })
	}
}
