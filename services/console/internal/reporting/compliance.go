package reporting

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/herald-health/herald/platform/fault"
	"github.com/jackc/pgx/v5"
)

// The compliance query over the rollups. A period [from, to) is read as its
// whole weeks from the rollup tables and its partial weeks at either end
// from the alerts table (reporting_rollup_rows and its siblings: the same
// rows computed from the alerts raised in that part), so any period is
// answered, and a long one costs about its weeks, not its alerts.

// rollupSource is the rollup rows of table over a period: the whole weeks
// [$2, $3) from the maintained table, the edges [$4, $5) and [$6, $7) from
// the alerts.
func rollupSource(table, rowsFunc string) string {
	return `SELECT * FROM ` + table + ` WHERE tenant = $1 AND week >= $2::date AND week < $3::date
	UNION ALL SELECT * FROM ` + rowsFunc + `($1, $4, $5)
	UNION ALL SELECT * FROM ` + rowsFunc + `($1, $6, $7)`
}

// groupingColumns are the first eight columns of a grouped query: which
// grouping (GROUPING() bits) and its key. The RCR audit groups by category
// only, and GROUPING() may only name grouped columns.
func groupingColumns(groups string) string {
	if groups == categoryGroups {
		return `GROUPING(category), 1, 1, 1, coalesce(category, ''), '', '', ''`
	}
	return `GROUPING(category), GROUPING(team_id), GROUPING(referrer_id), GROUPING(week),
	coalesce(category, ''), coalesce(team_id, ''), coalesce(referrer_id, ''), coalesce(to_char(week, 'YYYY-MM-DD'), '')`
}

// The grouping sets of the full compliance figures, and of the RCR audit
// (overall and per category only).
const (
	allGroups      = `(), (category), (team_id), (referrer_id), (week)`
	categoryGroups = `(), (category)`
)

func rollupCountsSQL(groups string) string {
	return `SELECT ` + groupingColumns(groups) + `,
	coalesce(sum(alerts), 0)::bigint, coalesce(sum(cancelled), 0)::bigint, coalesce(sum(acknowledged), 0)::bigint, coalesce(sum(in_time), 0)::bigint, coalesce(sum(late), 0)::bigint,
	coalesce(sum(unacknowledged), 0)::bigint, coalesce(sum(breached_communicate), 0)::bigint, coalesce(sum(breached_acknowledge), 0)::bigint,
	coalesce(sum(breached_action), 0)::bigint, coalesce(sum(failsafe_queued), 0)::bigint, coalesce(sum(quarantined), 0)::bigint
FROM (` + rollupSource("alert_rollup", "reporting_rollup_rows") + `) r
GROUP BY GROUPING SETS (` + groups + `)`
}

// rollupDeclinesSQL: with each grouping set, the reason.
func rollupDeclinesSQL(groups string) string {
	sets := `(reason), (category, reason), (team_id, reason), (referrer_id, reason), (week, reason)`
	if groups == categoryGroups {
		sets = `(reason), (category, reason)`
	}
	return `SELECT ` + groupingColumns(groups) + `, reason, coalesce(sum(declines), 0)::bigint
FROM (` + rollupSource("alert_rollup_declines", "reporting_rollup_decline_rows") + `) r
GROUP BY GROUPING SETS (` + sets + `)`
}

// pendingSQL: open alerts whose deadline is after the time of the query
// ($4), from the rows (the partial index alerts_pending): the rollups
// count them as unacknowledged.
func pendingSQL(groups string) string {
	return `SELECT ` + groupingColumns(groups) + `, count(*)
FROM (SELECT category, team_id, referrer_id, (date_trunc('week', raised_at AT TIME ZONE 'UTC'))::date AS week
	FROM alerts WHERE tenant = $1 AND acknowledged_at IS NULL AND cancelled_at IS NULL AND acknowledge_by > $4
	AND raised_at >= $2 AND raised_at < $3) p
GROUP BY GROUPING SETS (` + groups + `)`
}

// The histograms: the category rows give the overall, per-category and
// weekly histograms; the team and referrer rows their own. Each row is
// dimension, grouped by key (0/1), grouped by week (0/1), key, week,
// bucket, alerts.
var (
	categoryHistogramSQL = `SELECT dimension, GROUPING(group_key), GROUPING(week), coalesce(group_key, ''),
	coalesce(to_char(week, 'YYYY-MM-DD'), ''), bucket, coalesce(sum(alerts), 0)::bigint, coalesce(sum(micros), 0)::bigint
FROM (` + rollupSource("alert_ack_histogram", "reporting_ack_histogram_rows") + `) r
WHERE dimension = 'category'
GROUP BY GROUPING SETS ((dimension, bucket), (dimension, group_key, bucket), (dimension, week, bucket))`
	// rcrHistogramSQL: the RCR audit's, overall and per category only.
	rcrHistogramSQL = `SELECT dimension, GROUPING(group_key), 1, coalesce(group_key, ''), '', bucket, coalesce(sum(alerts), 0)::bigint, coalesce(sum(micros), 0)::bigint
FROM (` + rollupSource("alert_ack_histogram", "reporting_ack_histogram_rows") + `) r
WHERE dimension = 'category'
GROUP BY GROUPING SETS ((dimension, bucket), (dimension, group_key, bucket))`
	peopleHistogramSQL = `SELECT dimension, 0, 1, group_key, '', bucket, coalesce(sum(alerts), 0)::bigint, coalesce(sum(micros), 0)::bigint
FROM (` + rollupSource("alert_ack_histogram", "reporting_ack_histogram_rows") + `) r
WHERE dimension IN ('team', 'referrer')
GROUP BY dimension, group_key, bucket`
)

// Compliance returns the trust's figures over [from, to), overall and by
// category, team, referrer and week (weeks start on Monday, UTC), from the
// rollups. Every count equals the row-level answer; the median and p90 time
// to acknowledge come from the histogram, within half a bucket of
// PostgreSQL's percentile_cont over the rows: 0.5 s below 64 s, 0.8% of
// the value above (histogram.percentile).
func (s *Store) Compliance(ctx context.Context, tenant string, from, to time.Time) (*Compliance, error) {
	return s.compliance(ctx, tenant, from, to, allGroups)
}

// compliance reads the figures of groups (allGroups, or categoryGroups for
// the RCR audit, which then reads only the category histograms).
func (s *Store) compliance(ctx context.Context, tenant string, from, to time.Time, groups string) (*Compliance, error) {
	if tenant == "" {
		return nil, fault.Invalid("compliance", fault.Violation{Field: "tenant", Problem: "is required"})
	}
	if from.IsZero() || to.IsZero() || !from.Before(to) {
		return nil, fault.Invalid("compliance", fault.Violation{Field: "period", Problem: "needs from before to"})
	}
	from, to = from.UTC(), to.UTC()
	asOf := s.now()
	c := &Compliance{Tenant: tenant, From: from, To: to, AsOf: asOf}
	// Whole weeks [w1, w2) from the rollups; [from, w1) and [w2, to) from
	// the alerts.
	w1, w2 := weekCeil(from), weekOf(to)
	if !w1.Before(w2) {
		w1, w2 = to, to
	}
	args := []any{tenant, w1, w2, from, w1, w2, to}

	type groupKey = [2]string
	var (
		mu       sync.Mutex
		figs     = map[groupKey]*Figures{}
		pending  = map[groupKey]int{}
		declines = map[groupKey]map[string]int{}
		hists    = map[groupKey]histogram{}
	)
	// The four queries run side by side on their own connections.
	queries := []struct {
		name string
		sql  string
		args []any
		row  func(g groupKey, r pgx.Rows) error
	}{
		{"compliance", rollupCountsSQL(groups), args, func(g groupKey, r pgx.Rows) error {
			var v counters
			dst := make([]any, 0, nCounters)
			for i := range v {
				dst = append(dst, &v[i])
			}
			if err := r.Scan(append(groupDest(), dst...)...); err != nil {
				return err
			}
			f := &Figures{Alerts: int(v[cAlerts]), Cancelled: int(v[cCancelled]), Acknowledged: int(v[cAcknowledged]),
				InTime: int(v[cInTime]), Late: int(v[cLate]), Unacknowledged: int(v[cUnacknowledged]),
				BreachesCommunicate: int(v[cBreachedCommunicate]), BreachesAcknowledge: int(v[cBreachedAcknowledge]),
				BreachesAction: int(v[cBreachedAction]), FailsafeQueued: int(v[cFailsafeQueued]), Quarantined: int(v[cQuarantined])}
			mu.Lock()
			figs[g] = f
			mu.Unlock()
			return nil
		}},
		{"compliance pending", pendingSQL(groups), []any{tenant, from, to, asOf}, func(g groupKey, r pgx.Rows) error {
			var n int
			if err := r.Scan(append(groupDest(), &n)...); err != nil {
				return err
			}
			mu.Lock()
			pending[g] = n
			mu.Unlock()
			return nil
		}},
		{"compliance declines", rollupDeclinesSQL(groups), args, func(g groupKey, r pgx.Rows) error {
			var reason string
			var n int
			if err := r.Scan(append(groupDest(), &reason, &n)...); err != nil {
				return err
			}
			mu.Lock()
			if declines[g] == nil {
				declines[g] = map[string]int{}
			}
			declines[g][reason] = n
			mu.Unlock()
			return nil
		}},
	}
	histRow := func(r pgx.Rows) error {
		var dim, key, week string
		var byKey, byWeek int32
		var bucket, n, micros int64
		if err := r.Scan(&dim, &byKey, &byWeek, &key, &week, &bucket, &n, &micros); err != nil {
			return err
		}
		var g groupKey
		switch {
		case dim != "category" && byKey == 0:
			g = groupKey{dim, key}
		case dim != "category":
			return nil
		case byKey == 0:
			g = groupKey{"category", key}
		case byWeek == 0:
			g = groupKey{"week", week}
		}
		mu.Lock()
		if hists[g] == nil {
			hists[g] = histogram{}
		}
		hists[g][bucket] = [2]int64{n, micros}
		mu.Unlock()
		return nil
	}
	histSQL := []string{rcrHistogramSQL}
	if groups == allGroups {
		histSQL = []string{categoryHistogramSQL, peopleHistogramSQL}
	}
	for _, q := range histSQL {
		queries = append(queries, struct {
			name string
			sql  string
			args []any
			row  func(g groupKey, r pgx.Rows) error
		}{"compliance times to acknowledge", q, args, nil})
	}
	errs := make([]error, len(queries))
	var wg sync.WaitGroup
	for i, q := range queries {
		wg.Go(func() {
			if q.row == nil {
				errs[i] = s.rowsQuery(ctx, q.sql, q.args, histRow)
			} else {
				errs[i] = s.groupedQuery(ctx, q.sql, q.args, q.row)
			}
			if errs[i] != nil {
				errs[i] = unavailable(q.name, errs[i])
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	for g, f := range figs {
		// The rollups count every unacknowledged alert with a deadline;
		// those whose deadline is still ahead are pending, not due.
		f.Pending = pending[g]
		f.Unacknowledged -= f.Pending
		f.Due = f.InTime + f.Late + f.Unacknowledged
		f.PercentInTime = percent(f.InTime, f.Due)
		if h := hists[g]; h != nil {
			f.MedianAck, f.P90Ack = seconds(h.percentile(0.5)), seconds(h.percentile(0.9))
		}
		f.Declines = declines[g]
		c.place(g, *f)
	}
	c.sortRows()
	return c, nil
}

// rowsQuery runs a query and hands each row to row.
func (s *Store) rowsQuery(ctx context.Context, sql string, args []any, row func(pgx.Rows) error) error {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// groupingScan holds the grouping columns of a row while it is scanned.
type groupingScan struct {
	gc, gt, gr, gw       int32
	cat, team, ref, week string
}

// groupedQuery runs a grouping-sets query and hands each row, with its
// group, to row. Its first eight columns are groupingColumns.
func (s *Store) groupedQuery(ctx context.Context, sql string, args []any, row func([2]string, pgx.Rows) error) error {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		// Read the grouping columns first from the raw values, then let the
		// caller scan the whole row (groupDest consumes the first eight).
		var g groupingScan
		vals, err := rows.Values()
		if err != nil {
			return err
		}
		if len(vals) < 8 {
			return fmt.Errorf("grouped query: %d columns", len(vals))
		}
		g.gc, g.gt, g.gr, g.gw = vals[0].(int32), vals[1].(int32), vals[2].(int32), vals[3].(int32)
		g.cat, g.team, g.ref, g.week = vals[4].(string), vals[5].(string), vals[6].(string), vals[7].(string)
		if err := row(group(g.gc, g.gt, g.gr, g.gw, g.cat, g.team, g.ref, g.week), rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// groupDest is scan destinations for the eight grouping columns (already
// read by groupedQuery).
func groupDest() []any {
	var i int32
	var s string
	return []any{&i, &i, &i, &i, &s, &s, &s, &s}
}

// Drift is a rollup row that differs from the same row computed from the
// alerts table: a compliance figure read from the rollups would be wrong.
type Drift struct {
	Table  string // alert_rollup, alert_rollup_declines or alert_ack_histogram
	Tenant string
	Week   string // 2006-01-02
	// Maintained and Computed are the two rows as text ("" when absent).
	Maintained, Computed string
}

func (d Drift) String() string {
	return fmt.Sprintf("%s %s week %s: maintained %s, from the alerts %s", d.Table, d.Tenant, d.Week, d.Maintained, d.Computed)
}

// rollupTables are the rollup tables, the function computing their rows
// from the alerts, and their keys.
var rollupTables = []struct{ table, rowsFunc, key string }{
	{"alert_rollup", "reporting_rollup_rows", "tenant, week, category, team_id, referrer_id"},
	{"alert_rollup_declines", "reporting_rollup_decline_rows", "tenant, week, category, team_id, referrer_id, reason"},
	{"alert_ack_histogram", "reporting_ack_histogram_rows", "tenant, week, dimension, group_key, bucket"},
}

// Reconcile compares the maintained rollups of tenant for the weeks that
// hold [from, to) with the same rows computed from the alerts table, and
// returns every row that differs (none when they agree). It reads one
// snapshot, and the projector changes summaries and rollups in one
// transaction, so it can run while the projector writes. A drift means a
// compliance figure may be wrong: the caller logs it as an error, and
// RepairRollups rewrites the weeks from the alerts.
func (s *Store) Reconcile(ctx context.Context, tenant string, from, to time.Time) ([]Drift, error) {
	w1, w2 := weekOf(from), weekCeil(to)
	var out []Drift
	for _, t := range rollupTables {
		rows, err := s.pool.Query(ctx, `SELECT coalesce(m.tenant, c.tenant), to_char(coalesce(m.week, c.week), 'YYYY-MM-DD'),
			coalesce(m::text, ''), coalesce(c::text, '')
		FROM (SELECT * FROM `+t.table+` WHERE tenant = $1 AND week >= $2::date AND week < $3::date) m
		FULL JOIN `+t.rowsFunc+`($1, $4, $5) c ON (`+prefixed("m", t.key)+`) = (`+prefixed("c", t.key)+`)
		WHERE m IS DISTINCT FROM c`, tenant, w1, w2, w1, w2)
		if err != nil {
			return nil, unavailable("reconcile rollups", err)
		}
		ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Drift, error) {
			d := Drift{Table: t.table}
			err := r.Scan(&d.Tenant, &d.Week, &d.Maintained, &d.Computed)
			return d, err
		})
		if err != nil {
			return nil, unavailable("reconcile rollups", err)
		}
		out = append(out, ds...)
	}
	return out, nil
}

// prefixed qualifies each column of a comma-separated list with alias.
func prefixed(alias, cols string) string {
	var out []string
	for _, c := range strings.Split(cols, ", ") {
		out = append(out, alias+"."+c)
	}
	return strings.Join(out, ", ")
}

// ReconcileAll reconciles every trust's rollups of the weeks holding
// [from, to).
func (s *Store) ReconcileAll(ctx context.Context, from, to time.Time) ([]Drift, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT tenant FROM alert_rollup UNION SELECT DISTINCT tenant FROM alerts`)
	if err != nil {
		return nil, unavailable("reconcile rollups", err)
	}
	tenants, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, unavailable("reconcile rollups", err)
	}
	var out []Drift
	for _, t := range tenants {
		ds, err := s.Reconcile(ctx, t, from, to)
		if err != nil {
			return nil, err
		}
		out = append(out, ds...)
	}
	return out, nil
}

// RepairRollups rewrites tenant's rollups of the weeks holding [from, to)
// from the alerts table. It locks the rollup tables against the projector
// for its transaction (a projector's batch waits, then adds its changes to
// the repaired rows).
func (s *Store) RepairRollups(ctx context.Context, tenant string, from, to time.Time) error {
	w1, w2 := weekOf(from), weekCeil(to)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return unavailable("repair rollups", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `LOCK TABLE alert_rollup, alert_rollup_declines, alert_ack_histogram IN EXCLUSIVE MODE`); err != nil {
		return unavailable("repair rollups", err)
	}
	for _, t := range rollupTables {
		if _, err := tx.Exec(ctx, `DELETE FROM `+t.table+` WHERE tenant = $1 AND week >= $2::date AND week < $3::date`, tenant, w1, w2); err != nil {
			return unavailable("repair rollups", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+t.table+` SELECT * FROM `+t.rowsFunc+`($1, $2, $3)`, tenant, w1, w2); err != nil { // timestamptz
			return unavailable("repair rollups", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return unavailable("repair rollups", err)
	}
	return nil
}

// ReconcileEvery reconciles every trust's rollups of the weeks holding the
// last window (by the store's clock) every interval until ctx ends, and
// hands each non-empty set of drifts to onDrift (the console logs them as
// an error: a compliance figure may be wrong) before repairing the drifted
// weeks from the alerts (RepairRollups). A reconciliation that cannot run
// (the database is down) is retried at the next interval.
func (s *Store) ReconcileEvery(ctx context.Context, interval, window time.Duration, onDrift func([]Drift)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.now()
		drift, err := s.ReconcileAll(ctx, now.Add(-window), now)
		if err != nil || len(drift) == 0 {
			continue
		}
		onDrift(drift)
		repaired := map[string]bool{}
		for _, d := range drift {
			if !repaired[d.Tenant] {
				repaired[d.Tenant] = true
				_ = s.RepairRollups(ctx, d.Tenant, now.Add(-window), now) // a failure shows again at the next interval
			}
		}
	}
}
