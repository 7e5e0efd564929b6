package reporting

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/testinfra"
)

// BenchmarkProjector drains a backlog of alerts (each raised, routed,
// notified, about a third declined or breached, and acknowledged: 4-6
// events) from the real Kafka into PostgreSQL, and reports alerts/s,
// events/s and the batch write time (median, p99). Target: keep up with
// 1,000 alerts/s. HERALD_BENCH_PROJECTOR_ALERTS sets the backlog (default
// 10,000).
func BenchmarkProjector(b *testing.B) {
	n := envInt("HERALD_BENCH_PROJECTOR_ALERTS", 10_000)
	specs := population(11, n, "RXF")
	cfg := logConfig(b, 12)
	total := appendAll(b, cfg, specs)
	for b.Loop() {
		store := openStore(b, asOf)
		var mu sync.Mutex
		var writes []time.Duration
		var sizes []int
		start := time.Now()
		stop := runProjector(b, store, ProjectorConfig{Log: cfg, GroupID: testinfra.UniqueName("reporting-bench"), Reference: fakeRef,
			onWrite: func(events int, d time.Duration) {
				mu.Lock()
				writes, sizes = append(writes, d), append(sizes, events)
				mu.Unlock()
			}})
		waitEvents(b, store, total)
		elapsed := time.Since(start)
		stop()
		b.ReportMetric(float64(n)/elapsed.Seconds(), "alerts/s")
		b.ReportMetric(float64(total)/elapsed.Seconds(), "events/s")
		slices.Sort(writes)
		slices.Sort(sizes)
		b.ReportMetric(float64(pct(writes, 0.5).Microseconds())/1000, "batch-ms-p50")
		b.ReportMetric(float64(pct(writes, 0.99).Microseconds())/1000, "batch-ms-p99")
		b.ReportMetric(float64(sizes[len(sizes)/2]), "batch-events-p50")
		b.Logf("%d alerts, %d events in %v (including joining the group): %.0f alerts/s; %d batches", n, total, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), len(writes))
	}
}

// BenchmarkCompliance fills the alerts table of one trust (ALL) with
// synthetic alerts by SQL (generate_series: five years 2021-2025, the three
// categories, 20 teams, 500 referrers, 70% acknowledged), builds the
// rollups from them as the projector would have kept them, and times
// Compliance (from the rollups) over a quarter, a year, the whole five
// years (every row) and the five years cut mid-week at both ends: 15 runs
// each, reporting the median and the p95. The row-level query over every
// row (today's answer before the rollups) runs once beside it.
// HERALD_BENCH_REPORTING_ROWS sets the rows (default 200,000; the figures
// in docs/performance.md are for 10,000,000, which takes minutes to load:
// keep it out of make test).
func BenchmarkCompliance(b *testing.B) {
	rows := envInt("HERALD_BENCH_REPORTING_ROWS", 200_000)
	store := openStore(b, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	ctx := context.Background()
	start := time.Now()
	if err := fillSynthetic(ctx, store, rows); err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %d alert rows in %v", rows, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if err := store.RepairRollups(ctx, "ALL", time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		b.Fatal(err)
	}
	if _, err := store.pool.Exec(ctx, `VACUUM ANALYZE alert_rollup, alert_rollup_declines, alert_ack_histogram`); err != nil {
		b.Fatal(err)
	}
	var nr, nh int
	_ = store.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM alert_rollup), (SELECT count(*) FROM alert_ack_histogram)`).Scan(&nr, &nh)
	b.Logf("built the rollups (%d rollup rows, %d histogram rows) in %v", nr, nh, time.Since(start).Round(time.Millisecond))
	from := time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		from, to time.Time
		runs     int
		rows     bool
		rcr      bool
	}{
		{"quarter", from.AddDate(4, 0, 0), from.AddDate(4, 3, 0), 15, false, false},
		{"year", from.AddDate(4, 0, 0), from.AddDate(5, 0, 0), 15, false, false},
		{"5-years-all-rows", from, from.AddDate(5, 0, 0), 15, false, false},
		{"5-years-cut-mid-week", from.Add(3*24*time.Hour + 5*time.Hour), from.AddDate(5, 0, 0).Add(-2*24*time.Hour - 7*time.Hour), 15, false, false},
		{"rcr-report-5-years-all-rows", from, from.AddDate(5, 0, 0), 15, false, true},
		{"row-level-5-years-all-rows", from, from.AddDate(5, 0, 0), 1, true, false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				var ds []time.Duration
				var alerts int
				for range c.runs {
					t := time.Now()
					if c.rcr {
						r, err := store.RCRReport(ctx, "ALL", c.from, c.to)
						if err != nil {
							b.Fatal(err)
						}
						ds = append(ds, time.Since(t))
						alerts = r.Total.Denominator + r.Total.Pending
						continue
					}
					q := store.Compliance
					if c.rows {
						q = store.complianceFromRows
					}
					r, err := q(ctx, "ALL", c.from, c.to)
					if err != nil {
						b.Fatal(err)
					}
					ds = append(ds, time.Since(t))
					alerts = r.Overall.Alerts
				}
				slices.Sort(ds)
				b.ReportMetric(float64(pct(ds, 0.5).Microseconds())/1000, "ms-p50")
				b.ReportMetric(float64(pct(ds, 0.95).Microseconds())/1000, "ms-p95")
				b.ReportMetric(float64(alerts), "alerts")
			}
		})
	}
}

// fillSynthetic inserts rows alerts of the trust ALL, raised uniformly
// over 2021-2025.
func fillSynthetic(ctx context.Context, s *Store, rows int) error {
	_, err := s.pool.Exec(ctx, `
INSERT INTO alerts (alert_id, tenant, reference, accession, category, state, raised_at, routed_at,
	acknowledged_at, clock_start, acknowledge_by, declined_reasons, breached_communicate, breached_acknowledge,
	failsafe_queued_at, quarantined, policy_id, policy_version, team_id, referrer_id, events, last_event_at)
SELECT t || '-' || i, t, 'HRD-' || i, 'ACC' || i, cat, CASE WHEN acked THEN 'acknowledged' ELSE 'failsafe' END,
	raised, raised, CASE WHEN acked THEN raised + ack END, raised, raised + target,
	CASE WHEN i % 11 = 0 THEN ARRAY['WRONG_TEAM'] ELSE '{}' END, NOT acked, NOT acked OR ack > target,
	CASE WHEN NOT acked THEN raised + target END, i % 97 = 0, 'pol', '7', 'team-' || (i % 20), 'ref-' || (i % 500), 5, raised
FROM (
	SELECT i, t, raised, cat, target, (i % 10) < 7 AS acked,
		make_interval(secs => (hashint4(i) & 2147483647) % (extract(epoch FROM target)::int * 2)) AS ack
	FROM (
		SELECT i, 'ALL' AS t,
			timestamptz '2021-01-01' + make_interval(secs => (i::bigint * 157766400 / $1)) AS raised,
			(ARRAY['CRITICAL', 'URGENT', 'SIGNIFICANT_UNEXPECTED'])[1 + i % 3] AS cat,
			(ARRAY[interval '1 hour', interval '24 hours', interval '72 hours'])[1 + i % 3] AS target
		FROM generate_series(1, $1) AS i
	) g
) x`, rows)
	if err != nil {
		return fmt.Errorf("generate rows: %w", err)
	}
	_, err = s.pool.Exec(ctx, `VACUUM ANALYZE alerts`)
	return err
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(p*float64(len(d))))]
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkProjectorWrite times the database side of the projector alone:
// batches of 500 events (about 100 alerts) written by store.write, as the
// projector's writers do, without Kafka. It reports events/s, alerts/s and
// the batch time (median, p99).
func BenchmarkProjectorWrite(b *testing.B) {
	store := openStore(b, asOf)
	specs := population(13, 4000, "RXF")
	var evs []Event
	for _, s := range specs {
		for _, p := range s.events() {
			e, _ := FromProto(p, typeOf(p), 0, int64(len(evs)))
			evs = append(evs, e)
		}
	}
	for b.Loop() {
		var ds []time.Duration
		start := time.Now()
		for i := 0; i+500 <= len(evs); i += 500 {
			t := time.Now()
			if _, err := store.write(context.Background(), 1, evs[i:i+500], fakeRef, writeHooks{}); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(t))
		}
		elapsed := time.Since(start)
		slices.Sort(ds)
		n := len(ds) * 500
		b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
		b.ReportMetric(float64(n)/elapsed.Seconds()*float64(len(specs))/float64(len(evs)), "alerts/s")
		b.ReportMetric(float64(pct(ds, 0.5).Microseconds())/1000, "batch-ms-p50")
		b.ReportMetric(float64(pct(ds, 0.99).Microseconds())/1000, "batch-ms-p99")
		if _, err := store.pool.Exec(context.Background(), `TRUNCATE alerts, alert_events`); err != nil {
			b.Fatal(err)
		}
	}
}
