package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/fault"
	"github.com/herald-health/herald/platform/testinfra"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/internal/adapters/redisstore"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var t0 = time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)

func state(id, tenant string, offset int64, raised time.Duration, status ackv1.State) *lifecycle.State {
	st := &lifecycle.State{State: status}
	st.AlertId, st.Tenant, st.Offset, st.RaisedAt = id, tenant, offset, timestamppb.New(t0.Add(raised))
	return st
}

func TestEpochGuardsReadsAndWrites(t *testing.T) {
	ctx := context.Background()
	rdb := testinfra.NewRedis(t)
	s := redisstore.New(rdb, testinfra.UniqueName("ns"))

	_, err := s.Get(ctx, "a1")
	require.ErrorIs(t, err, app.ErrProjectionLost)
	require.ErrorIs(t, err, fault.ErrUnavailable)
	_, err = s.Put(ctx, state("a1", "RZZ", 1, 0, lifecycle.Routed))
	require.ErrorIs(t, err, app.ErrProjectionLost)
	ready, err := s.Ready(ctx)
	require.NoError(t, err)
	require.False(t, ready)

	// Restore works without the epoch and keeps the newest version.
	require.NoError(t, s.Restore(ctx, []*lifecycle.State{
		state("a1", "RZZ", 5, 0, lifecycle.Escalated),
		state("a1", "RZZ", 3, 0, lifecycle.Routed),
	}))
	require.NoError(t, s.MarkReady(ctx))
	got, err := s.Get(ctx, "a1")
	require.NoError(t, err)
	require.Equal(t, lifecycle.Escalated, got.State)

	// Put stores only newer offsets.
	ok, err := s.Put(ctx, state("a1", "RZZ", 4, 0, lifecycle.Routed))
	require.NoError(t, err)
	require.False(t, ok)
	ok, err = s.Put(ctx, state("a1", "RZZ", 6, 0, lifecycle.Acknowledged))
	require.NoError(t, err)
	require.True(t, ok)
	got, err = s.Get(ctx, "a1")
	require.NoError(t, err)
	require.Equal(t, lifecycle.Acknowledged, got.State)
	missing, err := s.Get(ctx, "nope")
	require.NoError(t, err)
	require.Nil(t, missing)

	// A wipe is seen at once.
	require.NoError(t, rdb.FlushDB(ctx).Err())
	_, err = s.Get(ctx, "a1")
	require.ErrorIs(t, err, app.ErrProjectionLost)
}

func TestOpenIndexAndScan(t *testing.T) {
	ctx := context.Background()
	s := redisstore.New(testinfra.NewRedis(t), testinfra.UniqueName("ns"))
	require.NoError(t, s.MarkReady(ctx))
	for i := range 7 {
		st := lifecycle.Routed
		if i == 3 {
			st = lifecycle.Closed
		}
		tenant := "RZZ"
		if i%2 == 1 {
			tenant = "RXX"
		}
		_, err := s.Put(ctx, state(fmt.Sprintf("a%d", i), tenant, int64(i), time.Duration(i)*time.Minute, st))
		require.NoError(t, err)
	}
	var open []string
	require.NoError(t, s.ForEachOpen(ctx, func(st *lifecycle.State) error {
		open = append(open, st.AlertId)
		return nil
	}))
	require.ElementsMatch(t, []string{"a0", "a1", "a2", "a4", "a5", "a6"}, open)

	var all []string
	cursor := ""
	for {
		page, next, err := s.Scan(ctx, "", cursor, 3)
		require.NoError(t, err)
		for _, st := range page {
			all = append(all, st.AlertId)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	require.Equal(t, []string{"a6", "a5", "a4", "a3", "a2", "a1", "a0"}, all, "newest first, each once")
	rzz, _, err := s.Scan(ctx, "RZZ", "", 10)
	require.NoError(t, err)
	require.Len(t, rzz, 4)
	_, _, err = s.Scan(ctx, "", "junk", 3)
	require.ErrorIs(t, err, fault.ErrInvalid)
}

func TestTokensAndLock(t *testing.T) {
	ctx := context.Background()
	s := redisstore.New(testinfra.NewRedis(t), testinfra.UniqueName("ns"))
	first, err := s.ClaimToken(ctx, "tok", time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.True(t, first)
	again, err := s.ClaimToken(ctx, "tok", time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.False(t, again)
	require.NoError(t, s.ReleaseToken(ctx, "tok"))
	first, err = s.ClaimToken(ctx, "tok", time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.True(t, first)

	ok, err := s.TryLock(ctx, "r1", time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = s.TryLock(ctx, "r2", time.Minute)
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, s.Unlock(ctx, "r2"), "another owner's unlock changes nothing")
	ok, err = s.TryLock(ctx, "r2", time.Minute)
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, s.Unlock(ctx, "r1"))
	ok, err = s.TryLock(ctx, "r2", time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
}

// TestClosedAlertsExpire: Redis keeps open alerts. A closed or cancelled
// alert's state expires RetainClosed after its last event (restored ones
// too, counted from their last event), and a later read says it is retired
// (app.ErrRetired), never "unknown", so a late event is not folded into an
// empty state. Open alerts and a store without RetainClosed keep theirs.
func TestClosedAlertsExpire(t *testing.T) {
	ctx := context.Background()
	rdb := testinfra.NewRedis(t)
	ns := testinfra.UniqueName("ns")
	now := t0.Add(10 * 24 * time.Hour)
	s := redisstore.New(rdb, ns).RetainClosed(30*24*time.Hour, func() time.Time { return now })
	require.NoError(t, s.MarkReady(ctx))
	ttl := func(id string) time.Duration {
		d, err := rdb.PTTL(ctx, "{"+ns+":ack}:state:"+id).Result()
		require.NoError(t, err)
		return d
	}
	closed := func(id string, offset int64, status ackv1.State) *lifecycle.State {
		st := state(id, "RZZ", offset, 0, status)
		st.UpdatedAt = timestamppb.New(t0) // its last event, ten days before now
		return st
	}

	_, err := s.Put(ctx, state("open", "RZZ", 1, 0, lifecycle.Escalated))
	require.NoError(t, err)
	require.Equal(t, time.Duration(-1), ttl("open"), "an open alert never expires")
	_, err = s.Put(ctx, closed("closed", 2, lifecycle.Closed))
	require.NoError(t, err)
	_, err = s.Put(ctx, closed("cancelled", 3, lifecycle.Cancelled))
	require.NoError(t, err)
	for _, id := range []string{"closed", "cancelled"} {
		d := ttl(id)
		require.Greater(t, d, 20*24*time.Hour-time.Minute, id)
		require.LessOrEqual(t, d, 20*24*time.Hour, id)
	}

	// Restored after its retention: it expires at once and reads as retired.
	old := closed("old", 4, lifecycle.Closed)
	old.UpdatedAt = timestamppb.New(now.Add(-31 * 24 * time.Hour))
	require.NoError(t, s.Restore(ctx, []*lifecycle.State{old}))
	require.Eventually(t, func() bool {
		_, err := s.Get(ctx, "old")
		return errors.Is(err, app.ErrRetired)
	}, time.Minute, 10*time.Millisecond)
	_, err = s.Get(ctx, "old")
	require.NotErrorIs(t, err, fault.ErrUnavailable, "retired is not an outage")
	missing, err := s.Get(ctx, "never-seen")
	require.NoError(t, err)
	require.Nil(t, missing)

	// Without RetainClosed nothing expires.
	keep := redisstore.New(rdb, testinfra.UniqueName("ns"))
	require.NoError(t, keep.MarkReady(ctx))
	_, err = keep.Put(ctx, closed("kept", 5, lifecycle.Closed))
	require.NoError(t, err)
}

// TestScanByDeadlineIsTheWorklistOrder (issue #21): ListAlerts' deadline
// order comes from an index kept by every put: open alerts of the trust,
// overdue (smallest deadline) first, then by deadline, no deadline last;
// a changed deadline moves the alert, a terminal one leaves the order, the
// cursor pages it without repeats or gaps, and a projection stored before
// the index existed is indexed once by BuildDeadlineOrder.
func TestScanByDeadlineIsTheWorklistOrder(t *testing.T) {
	ctx := context.Background()
	rdb := testinfra.NewRedis(t)
	ns := testinfra.UniqueName("ns")
	s := redisstore.New(rdb, ns)
	require.NoError(t, s.MarkReady(ctx))
	now := t0.Add(10 * time.Hour)
	due := func(id, tenant string, offset int64, d time.Duration) *lifecycle.State {
		st := state(id, tenant, offset, 0, lifecycle.Notified)
		st.Clocks = &eventsv1.Clocks{AcknowledgeBy: timestamppb.New(now.Add(d))}
		return st
	}
	put := func(st *lifecycle.State) {
		t.Helper()
		_, err := s.Put(ctx, st)
		require.NoError(t, err)
	}
	put(due("late-2h", "RZZ", 1, -2*time.Hour))
	put(due("soon", "RZZ", 1, time.Hour))
	put(due("late-1h", "RZZ", 1, -time.Hour))
	put(due("later", "RZZ", 1, 5*time.Hour))
	put(state("none", "RZZ", 1, 0, lifecycle.Routed)) // no deadline: last
	put(due("other-trust", "RZY", 1, -3*time.Hour))
	put(due("closed", "RZZ", 1, -4*time.Hour))
	put(due("moves", "RZZ", 1, -5*time.Hour))
	// Closed: out of the order; its deadline changed: it moves.
	closed := due("closed", "RZZ", 2, -4*time.Hour)
	closed.State = lifecycle.Closed
	put(closed)
	put(due("moves", "RZZ", 2, 3*time.Hour))

	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10)
		states, next, err := s.ScanByDeadline(ctx, "RZZ", cursor, 2)
		require.NoError(t, err)
		for _, st := range states {
			got = append(got, st.GetAlertId())
		}
		if next == "" {
			break
		}
		cursor = next
	}
	require.Equal(t, []string{"late-2h", "late-1h", "soon", "moves", "later", "none"}, got)

	all, _, err := s.ScanByDeadline(ctx, "", "", 100)
	require.NoError(t, err)
	require.Equal(t, "other-trust", all[0].GetAlertId())
	require.Len(t, all, 7)

	_, _, err = s.ScanByDeadline(ctx, "RZZ", "garbage", 2)
	require.ErrorIs(t, err, fault.ErrInvalid)

	// A projection stored before the index existed: no order until built.
	var keys []string
	for _, k := range []string{":bydeadline", ":bydeadline:tenant:RZZ", ":bydeadline:tenant:RZY", ":bydeadline:built"} {
		keys = append(keys, "{"+ns+":ack}"+k)
	}
	require.NoError(t, rdb.Del(ctx, keys...).Err())
	none, _, err := s.ScanByDeadline(ctx, "RZZ", "", 10)
	require.NoError(t, err)
	require.Empty(t, none)
	var open []*lifecycle.State
	require.NoError(t, s.ForEachOpen(ctx, func(st *lifecycle.State) error { open = append(open, st); return nil }))
	require.NoError(t, s.BuildDeadlineOrder(ctx, open))
	rebuilt, _, err := s.ScanByDeadline(ctx, "RZZ", "", 10)
	require.NoError(t, err)
	var ids []string
	for _, st := range rebuilt {
		ids = append(ids, st.GetAlertId())
	}
	require.Equal(t, got, ids)
}

// BenchmarkScanByDeadlineAt100kOpenAlerts: one worklist page (25) of a
// trust's open alerts in the deadline order, first and deep (after 50,000),
// with HERALD_BENCH_OPEN open alerts (default 100,000) of one trust in a
// real Redis: acknowledgement's side of the console's worklist. Reports
// p50 and p95 per page (wall clock).
func BenchmarkScanByDeadlineAt100kOpenAlerts(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("HERALD_BENCH_OPEN")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	rdb := testinfra.NewRedis(b)
	s := redisstore.New(rdb, testinfra.UniqueName("bench"))
	now := t0.Add(24 * time.Hour)
	var batch []*lifecycle.State
	for i := range n {
		st := state(fmt.Sprintf("alert-%06d", i), "RZZ", 1, time.Duration(i)*time.Second, lifecycle.Notified)
		st.Clocks = &eventsv1.Clocks{AcknowledgeBy: timestamppb.New(now.Add(time.Duration(i%7200-3600) * time.Second))}
		st.StepRecipients = []string{fmt.Sprintf("dr-%d", i%500)}
		batch = append(batch, st)
		if len(batch) == 1000 || i == n-1 {
			require.NoError(b, s.Restore(ctx, batch))
			batch = batch[:0]
		}
	}
	require.NoError(b, s.MarkReady(ctx))
	// The cursor after 50,000 alerts.
	deep := ""
	for range 100 {
		_, next, err := s.ScanByDeadline(ctx, "RZZ", deep, 500)
		require.NoError(b, err)
		deep = next
	}
	for _, c := range []struct{ name, cursor string }{{"first-page", ""}, {"after-50000", deep}} {
		b.Run(c.name, func(b *testing.B) {
			var took []time.Duration
			for b.Loop() {
				t := time.Now()
				states, _, err := s.ScanByDeadline(ctx, "RZZ", c.cursor, 25)
				took = append(took, time.Since(t))
				if err != nil || len(states) != 25 {
					b.Fatalf("%d states, %v", len(states), err)
				}
			}
			slices.Sort(took)
			q := func(p float64) time.Duration { return took[min(len(took)-1, int(p*float64(len(took))))] }
			b.ReportMetric(float64(q(0.5).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(q(0.95).Microseconds())/1000, "p95-ms")
		})
	}
}
