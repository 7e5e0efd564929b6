package reporting

import (
	"math/bits"
	"sort"
	"time"
)

// The compliance rollups (migration 00003): per trust, week of the raise
// (Monday, UTC), category, team and referrer, the counts the compliance
// figures need (alert_rollup) and the decline reasons
// (alert_rollup_declines); per trust, week and category, team or referrer,
// a histogram of the time to acknowledge (alert_ack_histogram). The
// projector keeps them in the same transaction as the alert summaries: for
// each alert whose summary changes it adds the new summary's contribution
// and subtracts the old one's (contribution), so a redelivered event (no
// summary change) changes nothing, and an amendment that moves an alert to
// another team moves its counts with it. reporting_rollup_rows and its two
// siblings compute the same rows from the alerts table: Store.Reconcile
// compares the two, Store.RepairRollups rewrites the maintained rows from
// the alerts.

// rollupKey is a rollup row's key.
type rollupKey struct {
	Tenant   string
	Week     time.Time // Monday 00:00 UTC
	Category string
	Team     string
	Referrer string
}

// The counters of alert_rollup, in its column order.
const (
	cAlerts = iota
	cCancelled
	cAcknowledged
	cInTime
	cLate
	cUnacknowledged
	cBreachedCommunicate
	cBreachedAcknowledge
	cBreachedAction
	cFailsafeQueued
	cQuarantined
	nCounters
)

type counters [nCounters]int64

// weekOf is the Monday 00:00 UTC of t's week.
func weekOf(t time.Time) time.Time {
	t = t.UTC()
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7))
}

// weekCeil is the first Monday 00:00 UTC at or after t.
func weekCeil(t time.Time) time.Time {
	w := weekOf(t)
	if w.Equal(t) {
		return w
	}
	return w.AddDate(0, 0, 7)
}

// ackBucket is the histogram bucket (its lower bound in whole seconds) of a
// time to acknowledge of us microseconds: whole seconds below 64 s, then 64
// buckets per doubling. The same function as the SQL reporting_ack_bucket.
func ackBucket(us int64) int64 {
	s := us / 1_000_000
	if us%1_000_000 != 0 && us < 0 {
		s-- // floor
	}
	if s < 64 {
		return s
	}
	e := bits.Len64(uint64(s)) - 7
	return (s >> e) << e
}

// bucketWidth is the width in seconds of the bucket whose lower bound is lo.
func bucketWidth(lo int64) int64 {
	if lo < 64 {
		return 1
	}
	return 1 << (bits.Len64(uint64(lo)) - 7)
}

// ackMicros is the time to acknowledge (from the start of the clocks, else
// the raise) in microseconds, as the alerts table's ack_seconds has it.
func ackMicros(s Summary) (int64, bool) {
	if s.AcknowledgedAt == nil {
		return 0, false
	}
	start := s.RaisedAt
	if s.ClockStart != nil {
		start = *s.ClockStart
	}
	return s.AcknowledgedAt.Sub(start).Microseconds(), true
}

// rollupDelta accumulates the changes a batch makes to the rollups.
type rollupDelta struct {
	counts   map[rollupKey]*counters
	declines map[rollupKey]map[string]int64
	hist     map[histKey]*[2]int64 // alerts, microseconds
}

// histKey is a row of alert_ack_histogram: one bucket of the histogram of
// a trust's week and one category, team or referrer.
type histKey struct {
	Tenant    string
	Week      time.Time
	Dimension string // category, team or referrer
	Group     string
	Bucket    int64
}

func newRollupDelta() *rollupDelta {
	return &rollupDelta{counts: map[rollupKey]*counters{}, declines: map[rollupKey]map[string]int64{}, hist: map[histKey]*[2]int64{}}
}

// add adds sign (+1 or -1) times the alert's contribution: one alert in
// its rollup row, its decline reasons, and its time to acknowledge.
func (d *rollupDelta) add(s Summary, sign int64) {
	k := rollupKey{Tenant: s.Tenant, Week: weekOf(s.RaisedAt), Category: s.Category, Team: s.TeamID, Referrer: s.ReferrerID}
	c := d.counts[k]
	if c == nil {
		c = &counters{}
		d.counts[k] = c
	}
	inc := func(i int, cond bool) {
		if cond {
			c[i] += sign
		}
	}
	inc(cAlerts, true)
	inc(cCancelled, s.CancelledAt != nil)
	inc(cAcknowledged, s.AcknowledgedAt != nil)
	if s.CancelledAt == nil && s.AcknowledgeBy != nil {
		inc(cInTime, s.AcknowledgedAt != nil && !s.AcknowledgedAt.After(*s.AcknowledgeBy))
		inc(cLate, s.AcknowledgedAt != nil && s.AcknowledgedAt.After(*s.AcknowledgeBy))
		inc(cUnacknowledged, s.AcknowledgedAt == nil)
	}
	inc(cBreachedCommunicate, s.BreachedCommunicate)
	inc(cBreachedAcknowledge, s.BreachedAcknowledge)
	inc(cBreachedAction, s.BreachedAction)
	inc(cFailsafeQueued, s.FailsafeQueuedAt != nil)
	inc(cQuarantined, s.Quarantined)
	for _, r := range s.DeclinedReasons {
		if d.declines[k] == nil {
			d.declines[k] = map[string]int64{}
		}
		d.declines[k][r] += sign
	}
	if us, ok := ackMicros(s); ok {
		b := ackBucket(us)
		for _, g := range [][2]string{{"category", k.Category}, {"team", k.Team}, {"referrer", k.Referrer}} {
			hk := histKey{Tenant: k.Tenant, Week: k.Week, Dimension: g[0], Group: g[1], Bucket: b}
			if d.hist[hk] == nil {
				d.hist[hk] = &[2]int64{}
			}
			d.hist[hk][0] += sign
			d.hist[hk][1] += sign * us
		}
	}
}

func keyLess(a, b rollupKey) bool {
	switch {
	case a.Tenant != b.Tenant:
		return a.Tenant < b.Tenant
	case !a.Week.Equal(b.Week):
		return a.Week.Before(b.Week)
	case a.Category != b.Category:
		return a.Category < b.Category
	case a.Team != b.Team:
		return a.Team < b.Team
	}
	return a.Referrer < b.Referrer
}

// keyArgs holds the key columns of rows to write, one array per column.
type keyArgs struct {
	tenant, cat, team, ref []string
	week                   []time.Time
}

func (k *keyArgs) add(r rollupKey) {
	k.tenant, k.week, k.cat, k.team, k.ref = append(k.tenant, r.Tenant), append(k.week, r.Week), append(k.cat, r.Category), append(k.team, r.Team), append(k.ref, r.Referrer)
}

func (k *keyArgs) args() []any { return []any{k.tenant, k.week, k.cat, k.team, k.ref} }

// countArgs returns the non-zero count changes as arrays in key order (a
// fixed order, so two writers lock shared rows in the same order).
func (d *rollupDelta) countArgs() (args []any, n int) {
	keys := make([]rollupKey, 0, len(d.counts))
	for k, c := range d.counts {
		if *c != (counters{}) {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keyLess(keys[i], keys[j]) })
	var ka keyArgs
	cols := make([][]int64, nCounters)
	for _, k := range keys {
		ka.add(k)
		for i, v := range d.counts[k] {
			cols[i] = append(cols[i], v)
		}
	}
	args = ka.args()
	for _, c := range cols {
		args = append(args, c)
	}
	return args, len(keys)
}

func (d *rollupDelta) declineArgs() (args []any, n int) {
	type dk struct {
		k      rollupKey
		reason string
	}
	var keys []dk
	for k, m := range d.declines {
		for r, v := range m {
			if v != 0 {
				keys = append(keys, dk{k, r})
			}
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].k != keys[j].k {
			return keyLess(keys[i].k, keys[j].k)
		}
		return keys[i].reason < keys[j].reason
	})
	var ka keyArgs
	var reasons []string
	var ns []int64
	for _, k := range keys {
		ka.add(k.k)
		reasons, ns = append(reasons, k.reason), append(ns, d.declines[k.k][k.reason])
	}
	return append(ka.args(), reasons, ns), len(keys)
}

func (d *rollupDelta) histArgs() (args []any, n int) {
	var keys []histKey
	for k, v := range d.hist {
		if *v != ([2]int64{}) {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		switch {
		case a.Tenant != b.Tenant:
			return a.Tenant < b.Tenant
		case !a.Week.Equal(b.Week):
			return a.Week.Before(b.Week)
		case a.Dimension != b.Dimension:
			return a.Dimension < b.Dimension
		case a.Group != b.Group:
			return a.Group < b.Group
		}
		return a.Bucket < b.Bucket
	})
	var tenants, dims, groups []string
	var weeks []time.Time
	var buckets, ns, micros []int64
	for _, k := range keys {
		tenants, weeks, dims, groups = append(tenants, k.Tenant), append(weeks, k.Week), append(dims, k.Dimension), append(groups, k.Group)
		buckets, ns, micros = append(buckets, k.Bucket), append(ns, d.hist[k][0]), append(micros, d.hist[k][1])
	}
	return []any{tenants, weeks, dims, groups, buckets, ns, micros}, len(keys)
}

const rollupKeyArrays = `$1::text[], $2::date[], $3::text[], $4::text[], $5::text[]`

// The upserts add the deltas; the deletes drop rows a delta emptied (an
// alert moved to another team by an amendment), so the maintained rows are
// exactly the rows computed from the alerts.
const (
	upsertRollup = `INSERT INTO alert_rollup SELECT * FROM unnest(` + rollupKeyArrays + `,
	$6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[])
ON CONFLICT (tenant, week, category, team_id, referrer_id) DO UPDATE SET
	alerts = alert_rollup.alerts + EXCLUDED.alerts, cancelled = alert_rollup.cancelled + EXCLUDED.cancelled,
	acknowledged = alert_rollup.acknowledged + EXCLUDED.acknowledged, in_time = alert_rollup.in_time + EXCLUDED.in_time,
	late = alert_rollup.late + EXCLUDED.late, unacknowledged = alert_rollup.unacknowledged + EXCLUDED.unacknowledged,
	breached_communicate = alert_rollup.breached_communicate + EXCLUDED.breached_communicate,
	breached_acknowledge = alert_rollup.breached_acknowledge + EXCLUDED.breached_acknowledge,
	breached_action = alert_rollup.breached_action + EXCLUDED.breached_action,
	failsafe_queued = alert_rollup.failsafe_queued + EXCLUDED.failsafe_queued,
	quarantined = alert_rollup.quarantined + EXCLUDED.quarantined`
	deleteEmptyRollup = `DELETE FROM alert_rollup r USING unnest(` + rollupKeyArrays + `) AS k(t, w, c, tm, rf)
WHERE r.tenant = k.t AND r.week = k.w AND r.category = k.c AND r.team_id = k.tm AND r.referrer_id = k.rf AND r.alerts = 0`
	upsertDeclines = `INSERT INTO alert_rollup_declines SELECT * FROM unnest(` + rollupKeyArrays + `, $6::text[], $7::bigint[])
ON CONFLICT (tenant, week, category, team_id, referrer_id, reason) DO UPDATE SET declines = alert_rollup_declines.declines + EXCLUDED.declines`
	deleteEmptyDeclines = `DELETE FROM alert_rollup_declines d USING unnest(` + rollupKeyArrays + `, $6::text[]) AS k(t, w, c, tm, rf, r)
WHERE d.tenant = k.t AND d.week = k.w AND d.category = k.c AND d.team_id = k.tm AND d.referrer_id = k.rf AND d.reason = k.r AND d.declines = 0`
	histKeyArrays   = `$1::text[], $2::date[], $3::text[], $4::text[], $5::bigint[]`
	upsertHistogram = `INSERT INTO alert_ack_histogram SELECT * FROM unnest(` + histKeyArrays + `, $6::bigint[], $7::bigint[])
ON CONFLICT (tenant, dimension, week, group_key, bucket) DO UPDATE SET alerts = alert_ack_histogram.alerts + EXCLUDED.alerts,
	micros = alert_ack_histogram.micros + EXCLUDED.micros`
	deleteEmptyHistogram = `DELETE FROM alert_ack_histogram h USING unnest(` + histKeyArrays + `) AS k(t, w, d, g, b)
WHERE h.tenant = k.t AND h.week = k.w AND h.dimension = k.d AND h.group_key = k.g AND h.bucket = k.b AND h.alerts = 0`
)

// histogram is a group's time-to-acknowledge histogram: bucket lower bound
// (seconds) to its alerts and the sum of their times (microseconds).
type histogram map[int64][2]int64

// percentile estimates PostgreSQL's percentile_cont(p) of the values the
// histogram counts: the two ranks it interpolates between are found
// exactly, and each is estimated as its bucket's one value when the bucket
// holds one alert (exact), else as the middle of its bucket. Each is then
// off by at most half its bucket's width: 0.5 s below 64 s, 1/128 of the
// value (0.8%) above. 0 when empty.
func (h histogram) percentile(p float64) float64 {
	var total int64
	buckets := make([]int64, 0, len(h))
	for b, v := range h {
		if v[0] > 0 {
			buckets = append(buckets, b)
			total += v[0]
		}
	}
	if total == 0 {
		return 0
	}
	sort.Slice(buckets, func(i, j int) bool { return buckets[i] < buckets[j] })
	estimate := func(b int64) float64 {
		if v := h[b]; v[0] == 1 {
			return float64(v[1]) / 1e6
		}
		return float64(b) + float64(bucketWidth(b))/2
	}
	valueAt := func(rank int64) float64 { // 0-based
		var seen int64
		for _, b := range buckets {
			seen += h[b][0]
			if rank < seen {
				return estimate(b)
			}
		}
		return estimate(buckets[len(buckets)-1])
	}
	pos := p * float64(total-1)
	lo := int64(pos)
	vlo := valueAt(lo)
	if float64(lo) == pos {
		return vlo
	}
	return vlo + (pos-float64(lo))*(valueAt(lo+1)-vlo)
}
