package reporting

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/testinfra"
)

// TestAckBucketSQLMatchesGo: the projector buckets times to acknowledge in
// Go (ackBucket), the reconciliation and the edges of a period in SQL
// (reporting_ack_bucket): they must agree, and a bucket is at most 1/64 of
// its lower bound wide.
func TestAckBucketSQLMatchesGo(t *testing.T) {
	store := openStore(t, asOf)
	r := rand.New(rand.NewPCG(5, 5))
	us := []int64{-1_500_000, -1, 0, 1, 999_999, 1_000_000, 63_999_999, 64_000_000, 127_000_000, 128_000_000, 129_000_000, 3_600_000_000}
	for range 2000 {
		us = append(us, r.Int64N(30*24*3600*1_000_000))
	}
	var secs []float64
	for _, v := range us {
		secs = append(secs, float64(v)/1e6)
	}
	var sql []int64
	if err := store.pool.QueryRow(context.Background(), `SELECT array_agg(reporting_ack_bucket(v) ORDER BY i) FROM unnest($1::float8[]) WITH ORDINALITY AS u(v, i)`, secs).Scan(&sql); err != nil {
		t.Fatal(err)
	}
	for i, v := range us {
		b := ackBucket(v)
		if sql[i] != b {
			t.Fatalf("%d µs: SQL bucket %d, Go bucket %d", v, sql[i], b)
		}
		s := float64(v) / 1e6
		if s < float64(b) || s >= float64(b+bucketWidth(b)) {
			t.Fatalf("%d µs is not in its bucket [%d, %d)", v, b, b+bucketWidth(b))
		}
		if b >= 64 && bucketWidth(b)*64 > b {
			t.Fatalf("bucket %d is %d s wide: more than 1/64", b, bucketWidth(b))
		}
	}
}

// TestRollupsEqualRowLevelAnswers projects a generated population (two
// trusts; alerts in time, late, never, pending, declined, breached,
// fail-safe, closed, cancelled, quarantined; some amended to another
// referrer and team after their first notification; some events appended
// to the log twice, the second copy after the alert's later events) from
// the real Kafka, and checks that the compliance figures read from the
// rollups equal the row-level figures over periods of whole weeks, partial
// weeks and less than a week: every count exactly, the median and p90
// within ackTolerance. The maintained rollups also reconcile with the rows.
func TestRollupsEqualRowLevelAnswers(t *testing.T) {
	specs := population(33, 120, "RXF", "RYY")
	r := rand.New(rand.NewPCG(33, 2))
	for i := range specs {
		if !specs[i].quarantined && r.IntN(6) == 0 {
			specs[i].amendReferrer, specs[i].amendTeam = "ref-amended", "team-amended"
		}
	}
	cfg := logConfig(t, 3)
	total := appendAll(t, cfg, specs)
	// Redeliveries: the events of every fifth alert, again.
	var again []spec
	for i, s := range specs {
		if i%5 == 0 {
			again = append(again, s)
		}
	}
	dups := appendAll(t, cfg, again)
	store := openStore(t, asOf)
	var handled atomic.Int64
	runProjector(t, store, ProjectorConfig{Log: cfg, GroupID: testinfra.UniqueName("reporting"), Reference: fakeRef,
		onWrite: func(events int, _ time.Duration) { handled.Add(int64(events)) }})
	waitEvents(t, store, total)
	waitSummaries(t, store, len(specs))
	// The copies are stored already, so the count of stored events does not
	// show that they were handled: the records handled do.
	deadline := time.Now().Add(3 * time.Minute)
	for handled.Load() < int64(total+dups) {
		if time.Now().After(deadline) {
			t.Fatalf("handled %d records of %d after 3 minutes", handled.Load(), total+dups)
		}
		time.Sleep(50 * time.Millisecond)
	}

	ctx := context.Background()
	periods := []struct {
		name     string
		from, to time.Time
	}{
		{"three whole weeks", t0, t0.AddDate(0, 0, 21)},
		{"partial weeks at both ends", t0.Add(50 * time.Hour), t0.AddDate(0, 0, 17).Add(7 * time.Hour)},
		{"within one week", t0.AddDate(0, 0, 8).Add(3 * time.Hour), t0.AddDate(0, 0, 12)},
		{"everything", t0.AddDate(0, 0, -30), asOf.AddDate(0, 0, 30)},
	}
	amended := 0
	for _, s := range specs {
		if s.amendTeam != "" {
			amended++
		}
	}
	if amended == 0 {
		t.Fatal("no amended alerts: the population does not move any alert between rollup rows")
	}
	for _, tenant := range []string{"RXF", "RYY"} {
		for _, p := range periods {
			got, err := store.Compliance(ctx, tenant, p.from, p.to)
			if err != nil {
				t.Fatal(err)
			}
			want, err := store.complianceFromRows(ctx, tenant, p.from, p.to)
			if err != nil {
				t.Fatal(err)
			}
			what := tenant + " " + p.name
			if want.Overall.Alerts == 0 {
				t.Fatalf("%s: no alerts in the period", what)
			}
			sameFigures(t, what+" overall", got.Overall, want.Overall)
			for _, g := range []struct {
				name      string
				got, want []Row
			}{{"category", got.ByCategory, want.ByCategory}, {"team", got.ByTeam, want.ByTeam},
				{"referrer", got.ByReferrer, want.ByReferrer}, {"week", got.Weekly, want.Weekly}} {
				if len(g.got) != len(g.want) {
					t.Fatalf("%s by %s: %d rows, want %d", what, g.name, len(g.got), len(g.want))
				}
				for i := range g.got {
					if g.got[i].Key != g.want[i].Key {
						t.Fatalf("%s by %s: row %d is %q, want %q", what, g.name, i, g.got[i].Key, g.want[i].Key)
					}
					sameFigures(t, what+" "+g.name+" "+g.got[i].Key, g.got[i].Figures, g.want[i].Figures)
				}
			}
		}
		// The RCR audit (category rollups only) equals the row-level
		// figures per category.
		for _, p := range periods {
			rcr, err := store.RCRReport(ctx, tenant, p.from, p.to)
			if err != nil {
				t.Fatal(err)
			}
			want, err := store.complianceFromRows(ctx, tenant, p.from, p.to)
			if err != nil {
				t.Fatal(err)
			}
			what := tenant + " " + p.name + " RCR"
			cats := map[string]Figures{}
			for _, r := range want.ByCategory {
				if r.Key != "" {
					cats[r.Key] = r.Figures
				}
			}
			if len(rcr.Rows) != len(cats) {
				t.Fatalf("%s: %d categories, want %d", what, len(rcr.Rows), len(cats))
			}
			for _, row := range append(rcr.Rows, rcr.Total) {
				f, ok := cats[row.Category]
				if row.Category == "ALL" {
					f, ok = want.Overall, true
				}
				if !ok || row.Numerator != f.InTime || row.Denominator != f.Due || row.Pending != f.Pending || row.Late != f.Late ||
					row.NotAcknowledged != f.Unacknowledged || row.FailsafeQueued != f.FailsafeQueued ||
					(row.MedianAck-f.MedianAck).Abs() > ackTolerance(f.MedianAck) || (row.P90Ack-f.P90Ack).Abs() > ackTolerance(f.P90Ack) {
					t.Errorf("%s %s: %+v, rows say %+v", what, row.Category, row, f)
				}
			}
		}
		// The amended alerts count under their new team only.
		c, err := store.Compliance(ctx, tenant, periods[3].from, periods[3].to)
		if err != nil {
			t.Fatal(err)
		}
		moved := 0
		for _, s := range specs {
			if s.tenant == tenant && s.amendTeam != "" {
				moved++
			}
		}
		for _, row := range c.ByTeam {
			if row.Key == "team-amended" && row.Alerts != moved {
				t.Fatalf("%s: team-amended has %d alerts, want the %d amended", tenant, row.Alerts, moved)
			}
		}
	}
	if drift, err := store.ReconcileAll(ctx, t0.AddDate(0, 0, -30), asOf.AddDate(0, 0, 30)); err != nil || len(drift) > 0 {
		t.Fatalf("the maintained rollups disagree with the alerts: %d rows, first %v; %v", len(drift), firstDrifts(drift), err)
	}
}

// TestReconcileFindsDriftAndRepairs: after the projector's writes the
// rollups reconcile with the alerts; a rollup row changed behind the
// projector's back (a drift: a bug, a manual edit, a restore of one table)
// is found by Reconcile, named by table, trust, week and group, and
// RepairRollups rewrites it from the alerts so that it reconciles again and
// the compliance figures are the row-level ones.
func TestReconcileFindsDriftAndRepairs(t *testing.T) {
	store := openStore(t, asOf)
	ctx := context.Background()
	specs := population(17, 60, "RXF")
	var evs []Event
	for _, s := range specs {
		for _, p := range s.events() {
			e, _ := FromProto(p, typeOf(p), 0, int64(len(evs)))
			evs = append(evs, e)
		}
	}
	for i := 0; i < len(evs); i += 50 {
		if _, err := store.write(ctx, 1, evs[i:min(i+50, len(evs))], fakeRef, writeHooks{}); err != nil {
			t.Fatal(err)
		}
	}
	from, to := t0, t0.AddDate(0, 0, 21)
	if drift, err := store.Reconcile(ctx, "RXF", from, to); err != nil || len(drift) > 0 {
		t.Fatalf("fresh rollups: %v %v", firstDrifts(drift), err)
	}
	want, err := store.complianceFromRows(ctx, "RXF", from, to)
	if err != nil {
		t.Fatal(err)
	}
	// The drift: one rollup row counts one more alert in time, and one
	// histogram row loses its alerts.
	if _, err := store.pool.Exec(ctx, `UPDATE alert_rollup SET in_time = in_time + 1, alerts = alerts + 1
		WHERE (tenant, week, category, team_id, referrer_id) = (SELECT tenant, week, category, team_id, referrer_id FROM alert_rollup WHERE tenant = 'RXF' ORDER BY 1, 2, 3, 4, 5 LIMIT 1)`); err != nil {
		t.Fatal(err)
	}
	if _, err := store.pool.Exec(ctx, `DELETE FROM alert_ack_histogram
		WHERE (tenant, dimension, week, group_key, bucket) = (SELECT tenant, dimension, week, group_key, bucket FROM alert_ack_histogram WHERE tenant = 'RXF' ORDER BY 1, 2, 3, 4, 5 LIMIT 1)`); err != nil {
		t.Fatal(err)
	}
	drifted, err := store.Compliance(ctx, "RXF", from, to)
	if err != nil {
		t.Fatal(err)
	}
	if drifted.Overall.InTime != want.Overall.InTime+1 {
		t.Fatalf("the drift did not reach the figures (in time %d, rows say %d): the test changes nothing", drifted.Overall.InTime, want.Overall.InTime)
	}
	drift, err := store.Reconcile(ctx, "RXF", from, to)
	if err != nil {
		t.Fatal(err)
	}
	tables := map[string]int{}
	for _, d := range drift {
		tables[d.Table]++
		if d.Tenant != "RXF" || d.Week == "" {
			t.Fatalf("drift without its row: %v", d)
		}
	}
	if len(drift) != 2 || tables["alert_rollup"] != 1 || tables["alert_ack_histogram"] != 1 {
		t.Fatalf("reconcile found %v, want the one changed rollup row and the one deleted histogram row", drift)
	}
	if err := store.RepairRollups(ctx, "RXF", from, to); err != nil {
		t.Fatal(err)
	}
	if drift, err := store.Reconcile(ctx, "RXF", from, to); err != nil || len(drift) > 0 {
		t.Fatalf("after the repair: %v %v", firstDrifts(drift), err)
	}
	got, err := store.Compliance(ctx, "RXF", from, to)
	if err != nil {
		t.Fatal(err)
	}
	sameFigures(t, "after the repair", got.Overall, want.Overall)
}

// TestHistogramPercentile: the histogram's median and p90 of known values
// are within half a bucket of the exact continuous percentiles.
func TestHistogramPercentile(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for _, n := range []int{1, 2, 3, 10, 101, 5000} {
		h := histogram{}
		var vals []float64
		for range n {
			us := r.Int64N(72 * 3600 * 1_000_000)
			v := h[ackBucket(us)]
			h[ackBucket(us)] = [2]int64{v[0] + 1, v[1] + us}
			vals = append(vals, float64(us)/1e6)
		}
		for _, p := range []float64{0.5, 0.9} {
			exact := percentileCont(vals, p)
			got := h.percentile(p)
			if d := seconds(got) - seconds(exact); d.Abs() > ackTolerance(seconds(exact)) {
				t.Fatalf("%d values, p%.0f: %v, exact %v (tolerance %v)", n, p*100, seconds(got), seconds(exact), ackTolerance(seconds(exact)))
			}
		}
	}
}

// firstDrifts is at most three drifts, for a failure message.
func firstDrifts(d []Drift) []Drift { return d[:min(len(d), 3)] }

// TestPeriodicReconciliationReportsAndRepairsDrift: ReconcileEvery, left
// running, reports a drift made behind the projector's back and repairs it,
// after which it reports nothing.
func TestPeriodicReconciliationReportsAndRepairsDrift(t *testing.T) {
	store := openStore(t, asOf)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var evs []Event
	for _, s := range population(19, 20, "RXF") {
		for _, p := range s.events() {
			e, _ := FromProto(p, typeOf(p), 0, int64(len(evs)))
			evs = append(evs, e)
		}
	}
	if _, err := store.write(ctx, 1, evs, fakeRef, writeHooks{}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.pool.Exec(ctx, `UPDATE alert_rollup SET late = late + 3 WHERE tenant = 'RXF'`); err != nil {
		t.Fatal(err)
	}
	reports := make(chan []Drift, 100)
	go store.ReconcileEvery(ctx, 20*time.Millisecond, 30*24*time.Hour, func(d []Drift) { reports <- d })
	select {
	case d := <-reports:
		if len(d) == 0 || d[0].Table != "alert_rollup" || d[0].Tenant != "RXF" {
			t.Fatalf("drift reported: %v", firstDrifts(d))
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("no drift reported in 2 minutes")
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		drift, err := store.Reconcile(ctx, "RXF", asOf.Add(-30*24*time.Hour), asOf)
		if err == nil && len(drift) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not repaired after 2 minutes: %v %v", firstDrifts(drift), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
