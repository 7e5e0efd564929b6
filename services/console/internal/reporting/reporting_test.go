package reporting

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/eventtype"
	"github.com/herald-health/herald/platform/testinfra"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

var targets = map[eventsv1.Category]time.Duration{
	eventsv1.Category_CATEGORY_CRITICAL:               time.Hour,
	eventsv1.Category_CATEGORY_URGENT:                 24 * time.Hour,
	eventsv1.Category_CATEGORY_SIGNIFICANT_UNEXPECTED: 72 * time.Hour,
}

// population makes n alerts per trust over three weeks from t0 with known
// outcomes: acknowledged in time, late, never; declined; breached; fail-safe
// queued and closed; cancelled; quarantined.
func population(seed uint64, n int, tenants ...string) []spec {
	r := rand.New(rand.NewPCG(seed, 1))
	cats := []eventsv1.Category{eventsv1.Category_CATEGORY_CRITICAL, eventsv1.Category_CATEGORY_URGENT, eventsv1.Category_CATEGORY_SIGNIFICANT_UNEXPECTED}
	reasons := []eventsv1.DeclineReason{eventsv1.DeclineReason_DECLINE_REASON_NOT_MY_PATIENT, eventsv1.DeclineReason_DECLINE_REASON_WRONG_TEAM, eventsv1.DeclineReason_DECLINE_REASON_LEFT_POST}
	var out []spec
	for _, tenant := range tenants {
		for i := range n {
			cat := cats[r.IntN(len(cats))]
			s := spec{tenant: tenant, id: fmt.Sprintf("%s-alert-%03d", tenant, i), accession: fmt.Sprintf("ACC%s%03d", tenant, i),
				referrer: fmt.Sprintf("ref-%d", r.IntN(4)), team: fmt.Sprintf("team-%d", r.IntN(3)), category: cat,
				raised: t0.Add(time.Duration(r.IntN(21*24*60)) * time.Minute), target: targets[cat]}
			switch k := r.IntN(20); {
			case k == 0:
				s.quarantined = true
			case k == 1:
				s.cancelled = true
			case k == 2: // open, its deadline ahead at asOf: pending
				s.raised = asOf.Add(-time.Duration(1+r.IntN(50)) * time.Minute)
			case k < 12: // in time
				s.ack = time.Duration(1+r.IntN(int(s.target/time.Minute))) * time.Minute
			case k < 15: // late
				s.ack = s.target + time.Duration(1+r.IntN(600))*time.Minute
				s.breach = []eventsv1.ClockKind{eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE}
			default: // never acknowledged
				s.breach = []eventsv1.ClockKind{eventsv1.ClockKind_CLOCK_KIND_COMMUNICATE, eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE}
				s.failsafe = true
				s.closed = r.IntN(2) == 0
			}
			if !s.quarantined && r.IntN(5) == 0 {
				for range 1 + r.IntN(2) {
					s.declines = append(s.declines, reasons[r.IntN(len(reasons))])
				}
			}
			out = append(out, s)
		}
	}
	return out
}

// asOf is when the figures are asked for: late in the third week, so that
// some alerts are still pending.
var asOf = t0.Add(20 * 24 * time.Hour)

func fakeRef(id string) string { return "HRD-" + strings.ToUpper(id) }

// TestComplianceFiguresEqualIndependentComputation raises alerts of two
// trusts on the real Kafka with known acknowledgement times, projects them
// into PostgreSQL, and checks every figure of the compliance report and the
// RCR audit against the same figures computed in Go from the specs.
// A trust with nothing projected yet (a new deployment, or the projector
// still catching up) gets zero figures, not an error: over no rows the
// grand total's sums are NULL, which once failed the page with a 502.
func TestComplianceOfAnEmptyPeriodIsZeroNotAnError(t *testing.T) {
	store := openStore(t, asOf)
	from, to := t0, t0.Add(21*24*time.Hour)
	c, err := store.Compliance(context.Background(), "RXF", from, to)
	if err != nil {
		t.Fatalf("compliance over no alerts: %v", err)
	}
	if c.Overall.Alerts != 0 || c.Overall.InTime != 0 || c.Overall.Unacknowledged != 0 {
		t.Fatalf("compliance over no alerts: %+v, want zeros", c.Overall)
	}
	if _, err := store.RCRReport(context.Background(), "RXF", from, to); err != nil {
		t.Fatalf("RCR report over no alerts: %v", err)
	}
}

func TestComplianceFiguresEqualIndependentComputation(t *testing.T) {
	specs := population(21, 80, "RXF", "RYY")
	cfg := logConfig(t, 3)
	total := appendAll(t, cfg, specs)
	store := openStore(t, asOf)
	runProjector(t, store, ProjectorConfig{Log: cfg, GroupID: testinfra.UniqueName("reporting"), Reference: fakeRef})
	waitEvents(t, store, total)

	from, to := t0, t0.Add(21*24*time.Hour)
	c, err := store.Compliance(context.Background(), "RXF", from, to)
	if err != nil {
		t.Fatal(err)
	}
	rxf := func(s spec) bool { return s.tenant == "RXF" }
	sameFigures(t, "overall", c.Overall, expected(specs, asOf, rxf))
	if c.Overall.Alerts != 80 || c.Overall.InTime == 0 || c.Overall.Late == 0 || c.Overall.Unacknowledged == 0 || c.Overall.Pending == 0 {
		t.Fatalf("the population does not exercise every outcome: %+v", c.Overall)
	}
	for _, r := range c.ByCategory {
		sameFigures(t, "category "+r.Key, r.Figures, expected(specs, asOf, func(s spec) bool {
			cat := ""
			if !s.quarantined {
				cat = short(s.category.String(), "CATEGORY_")
			}
			return rxf(s) && cat == r.Key
		}))
	}
	for _, r := range c.ByTeam {
		sameFigures(t, "team "+r.Key, r.Figures, expected(specs, asOf, func(s spec) bool { return rxf(s) && s.team == r.Key }))
	}
	for _, r := range c.ByReferrer {
		sameFigures(t, "referrer "+r.Key, r.Figures, expected(specs, asOf, func(s spec) bool { return rxf(s) && s.referrer == r.Key }))
	}
	if len(c.Weekly) != 3 {
		t.Fatalf("weeks: %d, want 3", len(c.Weekly))
	}
	for i, r := range c.Weekly {
		start := t0.Add(time.Duration(i) * 7 * 24 * time.Hour)
		if r.Key != start.Format("2006-01-02") {
			t.Fatalf("week %d is %s, want %s", i, r.Key, start.Format("2006-01-02"))
		}
		sameFigures(t, "week "+r.Key, r.Figures, expected(specs, asOf, func(s spec) bool {
			return rxf(s) && !s.raised.Before(start) && s.raised.Before(start.Add(7*24*time.Hour))
		}))
	}

	// A period of one week only counts that week's alerts.
	wk, err := store.Compliance(context.Background(), "RXF", t0, t0.Add(7*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sameFigures(t, "first week", wk.Overall, c.Weekly[0].Figures)

	// The RCR audit: per category, numerator/denominator = in time / due.
	r, err := store.RCRReport(context.Background(), "RXF", from, to)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) != 3 {
		t.Fatalf("RCR rows: %+v", r.Rows)
	}
	for _, row := range r.Rows {
		want := expected(specs, asOf, func(s spec) bool {
			return rxf(s) && !s.quarantined && short(s.category.String(), "CATEGORY_") == row.Category
		})
		if row.Numerator != want.InTime || row.Denominator != want.Due || row.Pending != want.Pending ||
			row.Late != want.Late || row.NotAcknowledged != want.Unacknowledged {
			t.Errorf("RCR %s: got %+v, want numerator %d denominator %d pending %d late %d unacknowledged %d",
				row.Category, row, want.InTime, want.Due, want.Pending, want.Late, want.Unacknowledged)
		}
	}
	var b strings.Builder
	if err := r.WriteCSV(&b); err != nil {
		t.Fatal(err)
	}
	lines, err := csv.NewReader(strings.NewReader(b.String())).ReadAll()
	if err != nil {
		t.Fatalf("CSV does not parse: %v\n%s", err, b.String())
	}
	if len(lines) != 1+3+1 || lines[0][5] != "numerator_acknowledged_in_time" || lines[4][4] != "ALL" {
		t.Fatalf("CSV:\n%s", b.String())
	}
	if lines[4][5] != fmt.Sprint(r.Total.Numerator) || lines[4][6] != fmt.Sprint(c.Overall.Due) {
		t.Fatalf("CSV total line %v, want numerator %d denominator %d", lines[4], r.Total.Numerator, c.Overall.Due)
	}

	// The other trust's figures are its own.
	y, err := store.Compliance(context.Background(), "RYY", from, to)
	if err != nil {
		t.Fatal(err)
	}
	sameFigures(t, "RYY overall", y.Overall, expected(specs, asOf, func(s spec) bool { return s.tenant == "RYY" }))
}

// TestProjectorKilledMidBatchConverges kills the projector twice in the
// middle of batches — once after the database committed and before the
// offsets were (the records are redelivered), once inside the transaction
// (it rolls back) — and checks that the store ends exactly as a projector
// that was never killed leaves it: every event once, the same summaries.
func TestProjectorKilledMidBatchConverges(t *testing.T) {
	specs := population(7, 60, "RXF")
	cfg := logConfig(t, 2)
	total := appendAll(t, cfg, specs)
	group := testinfra.UniqueName("reporting")
	store := openStore(t, asOf)

	// 1: the second batch commits in PostgreSQL, then the process dies.
	killed := make(chan struct{})
	var batches atomic.Int32
	stop := runProjector(t, store, ProjectorConfig{Log: cfg, GroupID: group, MaxBatch: 40, Reference: fakeRef,
		afterCommit: func(ctx context.Context, n int) error {
			if batches.Add(1) == 2 {
				close(killed)
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		}})
	<-killed
	stop()
	stored := storedEvents(t, store)
	if stored == 0 || stored >= total {
		t.Fatalf("after the first kill the store holds %d of %d events: not mid-stream", stored, total)
	}

	// 2: the next batch dies inside its transaction, after its inserts.
	killed2 := make(chan struct{})
	var once atomic.Bool
	stop = runProjector(t, store, ProjectorConfig{Log: cfg, GroupID: group, MaxBatch: 40, Reference: fakeRef,
		hooks: writeHooks{afterInsert: func() error {
			if once.CompareAndSwap(false, true) {
				close(killed2)
				return errors.New("killed inside the transaction")
			}
			return nil
		}}})
	<-killed2
	stop()

	// 2b: the next batch dies after writing its summaries and rollups,
	// before its commit.
	killed3 := make(chan struct{})
	var once3 atomic.Bool
	stop = runProjector(t, store, ProjectorConfig{Log: cfg, GroupID: group, MaxBatch: 40, Reference: fakeRef,
		hooks: writeHooks{beforeCommit: func() error {
			if once3.CompareAndSwap(false, true) {
				close(killed3)
				return errors.New("killed before the commit")
			}
			return nil
		}}})
	<-killed3
	stop()

	// 3: a projector that is not killed finishes the log.
	runProjector(t, store, ProjectorConfig{Log: cfg, GroupID: group, MaxBatch: 40, Reference: fakeRef})
	waitEvents(t, store, total)

	// The reference: a store fed once by a projector never killed.
	clean := openStore(t, asOf)
	runProjector(t, clean, ProjectorConfig{Log: cfg, GroupID: testinfra.UniqueName("reporting"), Reference: fakeRef})
	waitEvents(t, clean, total)
	waitSummaries(t, store, len(specs))
	waitSummaries(t, clean, len(specs))
	for _, table := range []string{"alerts", "alert_rollup", "alert_rollup_declines", "alert_ack_histogram"} {
		if got, want := dump(t, store, table), dump(t, clean, table); got != want {
			t.Fatalf("%s differs from a projector never killed: %s", table, firstDiff(got, want))
		}
	}
	if drift, err := store.ReconcileAll(context.Background(), t0.AddDate(0, 0, -7), asOf.AddDate(0, 0, 7)); err != nil || len(drift) > 0 {
		t.Fatalf("rollups after the kills disagree with the alerts: %d rows, first %v; %v", len(drift), firstDrifts(drift), err)
	}
	for _, s := range specs {
		evs, err := store.Timeline(context.Background(), s.tenant, s.id)
		if err != nil || len(evs) != len(s.events()) {
			t.Fatalf("timeline of %s: %d events (%v), want %d", s.id, len(evs), err, len(s.events()))
		}
	}
}

// TestRebuildReplaysTheLog: Rebuild empties the store; the running
// projector notices the new generation and replays the log from its start
// to the same rows.
func TestRebuildReplaysTheLog(t *testing.T) {
	specs := population(3, 30, "RXF")
	cfg := logConfig(t, 2)
	total := appendAll(t, cfg, specs)
	store := openStore(t, asOf)
	runProjector(t, store, ProjectorConfig{Log: cfg, GroupID: testinfra.UniqueName("reporting"), Reference: fakeRef, GenerationPoll: 100 * time.Millisecond})
	waitEvents(t, store, total)
	waitSummaries(t, store, len(specs))
	before := dump(t, store, "alerts")
	gen, err := store.Rebuild(context.Background())
	if err != nil || gen != 2 {
		t.Fatalf("rebuild: generation %d, %v", gen, err)
	}
	waitEvents(t, store, total)
	waitSummaries(t, store, len(specs))
	if after := dump(t, store, "alerts"); after != before {
		t.Fatalf("rebuilt summaries differ: %s", firstDiff(after, before))
	}
}

// TestSearchTimelineAndTrusts: search by accession, reference and date,
// paging; one trust never sees another's alerts; no patient data or typed
// free text is stored.
func TestSearchTimelineAndTrusts(t *testing.T) {
	specs := population(5, 25, "RXF", "RYY")
	cfg := logConfig(t, 1)
	total := appendAll(t, cfg, specs)
	store := openStore(t, asOf)
	runProjector(t, store, ProjectorConfig{Log: cfg, GroupID: testinfra.UniqueName("reporting"), Reference: fakeRef})
	waitEvents(t, store, total)
	waitSummaries(t, store, len(specs))
	ctx := context.Background()
	a := specs[3] // RXF

	page, err := store.Search(ctx, SearchQuery{Tenant: "RXF", Accession: a.accession})
	if err != nil || len(page.Alerts) != 1 || page.Alerts[0].AlertID != a.id {
		t.Fatalf("search by accession: %+v %v", page, err)
	}
	page, err = store.Search(ctx, SearchQuery{Tenant: "RXF", Reference: strings.ToLower(fakeRef(a.id))})
	if err != nil || len(page.Alerts) != 1 || page.Alerts[0].AlertID != a.id {
		t.Fatalf("search by reference: %+v %v", page, err)
	}
	if page, _ := store.Search(ctx, SearchQuery{Tenant: "RYY", Accession: a.accession}); len(page.Alerts) != 0 {
		t.Fatalf("trust RYY finds RXF's alert: %+v", page)
	}
	if _, err := store.Alert(ctx, "RYY", a.id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("RYY reads RXF's alert: %v", err)
	}
	if _, err := store.Timeline(ctx, "RYY", a.id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("RYY reads RXF's timeline: %v", err)
	}
	if _, err := store.Search(ctx, SearchQuery{}); err == nil || !strings.Contains(err.Error(), "tenant") {
		t.Fatalf("a search without a trust: %v", err)
	}

	// Paging over a date range visits every RXF alert of the first week once.
	from, to := t0, t0.Add(7*24*time.Hour)
	want := map[string]bool{}
	for _, s := range specs {
		if s.tenant == "RXF" && !s.raised.Before(from) && s.raised.Before(to) {
			want[s.id] = true
		}
	}
	seen := map[string]bool{}
	q := SearchQuery{Tenant: "RXF", From: from, To: to, Limit: 4}
	for {
		page, err := store.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range page.Alerts {
			if seen[s.AlertID] || !want[s.AlertID] {
				t.Fatalf("page returned %s twice or outside the range", s.AlertID)
			}
			seen[s.AlertID] = true
		}
		if page.NextCursor == "" {
			break
		}
		q.Cursor = page.NextCursor
	}
	if len(seen) != len(want) || len(want) == 0 {
		t.Fatalf("paging saw %d of %d alerts", len(seen), len(want))
	}

	sum, err := store.Alert(ctx, "RXF", a.id)
	if err != nil || sum.Reference != fakeRef(a.id) || sum.Accession != a.accession || sum.ReferrerID != a.referrer || sum.PolicyVersion != "7" {
		t.Fatalf("summary: %+v %v", sum, err)
	}
	evs, err := store.Timeline(ctx, "RXF", a.id)
	if err != nil || len(evs) != len(a.events()) || evs[0].Type != eventtype.AlertRaised && evs[0].Type != eventtype.AlertQuarantined {
		t.Fatalf("timeline: %+v %v", evs, err)
	}
	// The governance timeline's "who": the acting person's id, name, role
	// and identity provider as the command recorded them.
	ackSeen := false
	for _, s := range specs {
		if s.tenant != "RXF" || s.ack == 0 {
			continue
		}
		evs, err := store.Timeline(ctx, "RXF", s.id)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Type != eventtype.AlertAcknowledged {
				continue
			}
			ackSeen = true
			if e.ActorID != "p-"+s.referrer || e.ActorName != "Dr "+s.referrer || e.ActorRole != "clinician" || e.ActorIdentityProvider != "cis2" {
				t.Fatalf("the acknowledgement's actor in the timeline: %+v", e)
			}
		}
		break
	}
	if !ackSeen {
		t.Fatal("no acknowledged RXF alert in the population to check the actor of")
	}
	for _, table := range []string{"alerts", "alert_events"} {
		d := dump(t, store, table)
		for _, secret := range []string{"9990000018", "NEVER-STORED", "never stored", "free text"} {
			if strings.Contains(d, secret) {
				t.Fatalf("table %s holds %q", table, secret)
			}
		}
	}
}

func storedEvents(t testing.TB, s *Store) int {
	var n int
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM alert_events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitSummaries waits for n summaries (they commit with their events; this
// only guards against reading between two stores' projectors).
func waitSummaries(t testing.TB, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var got int
		if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM alerts`).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d summaries", got, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dump returns a table's rows as JSON lines in key order.
func dump(t testing.TB, s *Store, table string) string {
	t.Helper()
	key := "x.alert_id"
	switch table {
	case "alert_events":
		key = "x.event_id"
	case "alert_rollup", "alert_rollup_declines", "alert_ack_histogram":
		key = "x::text"
	}
	var out string
	err := s.pool.QueryRow(context.Background(), `SELECT coalesce(string_agg(row_to_json(x)::text, E'\n' ORDER BY `+key+`), '') FROM `+table+` x`).Scan(&out)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// firstDiff returns the first differing line of two dumps.
func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n%s\nvs\n%s", i, x, y)
		}
	}
	return ""
}
