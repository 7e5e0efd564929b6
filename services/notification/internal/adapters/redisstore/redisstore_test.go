package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/redisbatch"
	"github.com/herald-health/herald/platform/testinfra"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/notification/internal/app"
	"github.com/herald-health/herald/services/notification/internal/domain"
)

var t0 = time.UnixMilli(1_800_000_000_000)

// TestScheduleClaimLeaseAndDone runs on the client and through a
// redisbatch.Batcher, as the service wires it.
func TestScheduleClaimLeaseAndDone(t *testing.T) {
	t.Run("client", func(t *testing.T) { scheduleClaimLeaseAndDone(t, New(testinfra.NewRedis(t), "t")) })
	t.Run("batcher", func(t *testing.T) {
		rdb := testinfra.NewRedis(t)
		b := redisbatch.New(rdb)
		t.Cleanup(b.Close)
		scheduleClaimLeaseAndDone(t, New(rdb, "t").PipelinesVia(b).ScriptsVia(b))
	})
}

func scheduleClaimLeaseAndDone(t *testing.T, s *Store) {
	ctx := context.Background()
	a := domain.Alert{ID: "A1", Tenant: "RZZ", Routed: true}
	job := app.Job{Kind: app.JobStep, AlertID: "A1", Cause: "e1"}
	added, err := s.SaveAlert(ctx, a, []app.Job{job}, t0)
	require.NoError(t, err)
	require.Equal(t, []bool{true}, added)
	added, err = s.SaveAlert(ctx, a, []app.Job{job}, t0.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, []bool{false}, added, "scheduling the same job again changes nothing")
	got, err := s.Alert(ctx, "A1")
	require.NoError(t, err)
	require.Equal(t, a, got)

	at, ok, err := s.NextDue(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, t0, at)

	jobs, err := s.Claim(ctx, t0.Add(-time.Millisecond), 10, time.Minute)
	require.NoError(t, err)
	require.Empty(t, jobs, "not due yet")
	jobs, err = s.Claim(ctx, t0, 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []app.Job{job}, jobs)
	jobs, err = s.Claim(ctx, t0.Add(time.Second), 10, time.Minute)
	require.NoError(t, err)
	require.Empty(t, jobs, "leased jobs are hidden")
	jobs, err = s.Claim(ctx, t0.Add(time.Minute), 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []app.Job{job}, jobs, "an expired lease gives the job back")

	r1 := app.Job{Kind: app.JobRecipient, AlertID: "A1", PersonID: "p1"}
	r2 := app.Job{Kind: app.JobRecipient, AlertID: "A1", PersonID: "p2"}
	require.NoError(t, s.FanOut(ctx, job, []app.Job{r1, r2}, t0.Add(2*time.Minute)))
	jobs, err = s.Claim(ctx, t0.Add(2*time.Minute), 10, time.Minute)
	require.NoError(t, err)
	require.ElementsMatch(t, []app.Job{r1, r2}, jobs, "the step job is gone, recipients are scheduled")

	all, ex, err := s.Exhaust(ctx, r1)
	require.NoError(t, err)
	require.Equal(t, [2]int{2, 1}, [2]int{all, ex})
	all, ex, err = s.Exhaust(ctx, r1)
	require.NoError(t, err)
	require.Equal(t, [2]int{2, 1}, [2]int{all, ex}, "exhausting twice counts once")
	all, ex, err = s.Exhaust(ctx, r2)
	require.NoError(t, err)
	require.Equal(t, [2]int{2, 2}, [2]int{all, ex})

	require.NoError(t, s.Done(ctx, r1))
	require.NoError(t, s.Reschedule(ctx, r2, t0.Add(time.Hour)))
	at, _, err = s.NextDue(ctx)
	require.NoError(t, err)
	require.Equal(t, t0.Add(time.Hour), at)
}

func TestCriticalJobsAreClaimedFirst(t *testing.T) {
	ctx := context.Background()
	s := New(testinfra.NewRedis(t), "t")
	var urgent []app.Job
	for i := range 3 {
		j := app.Job{Kind: app.JobStep, AlertID: "U" + string(rune('0'+i)), Cause: "e"}
		_, err := s.SaveAlert(ctx, domain.Alert{ID: j.AlertID}, []app.Job{j}, t0.Add(time.Duration(i)*time.Second))
		require.NoError(t, err)
		urgent = append(urgent, j)
	}
	critical := app.Job{Kind: app.JobStep, AlertID: "C", Cause: "e", Critical: true}
	_, err := s.SaveAlert(ctx, domain.Alert{ID: "C", Category: eventsv1.Category_CATEGORY_CRITICAL}, []app.Job{critical}, t0.Add(10*time.Second))
	require.NoError(t, err)

	at, ok, err := s.NextDue(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, t0, at, "the earliest of both schedules")
	jobs, err := s.Claim(ctx, t0.Add(9*time.Second), 2, time.Minute)
	require.NoError(t, err)
	require.Equal(t, urgent[:2], jobs, "a critical job not yet due waits")

	jobs, err = s.Claim(ctx, t0.Add(20*time.Second), 2, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []app.Job{critical, urgent[2]}, jobs, "a due critical job goes before an earlier due one")

	require.NoError(t, s.Reschedule(ctx, critical, t0.Add(30*time.Second)))
	at, _, err = s.NextDue(ctx)
	require.NoError(t, err)
	require.Equal(t, t0.Add(30*time.Second), at, "rescheduled on its own schedule")
	require.NoError(t, s.Done(ctx, critical))
	_, ok, err = s.NextDue(ctx)
	require.NoError(t, err)
	require.True(t, ok, "the urgent jobs are still leased, so scheduled")
	for _, j := range urgent {
		require.NoError(t, s.Done(ctx, j))
	}
	_, ok, err = s.NextDue(ctx)
	require.NoError(t, err)
	require.False(t, ok, "Done removes a critical job from its schedule")
}

func TestRecordsAndEpoch(t *testing.T) {
	ctx := context.Background()
	s := New(testinfra.NewRedis(t), "t")
	r := app.Record{NotificationID: "n1", AlertID: "A1", PersonID: "p1", Channel: eventsv1.Channel_CHANNEL_EMAIL,
		Phase: domain.PhaseSending, Attempts: 1, CreatedAt: t0, UpdatedAt: t0}
	require.NoError(t, s.PutRecord(ctx, r))
	r2 := r
	r2.NotificationID, r2.CreatedAt = "n2", t0.Add(time.Second)
	require.NoError(t, s.PutRecord(ctx, r2))
	r.Phase = domain.PhaseRecorded
	require.NoError(t, s.PutRecord(ctx, r))
	got, err := s.Record(ctx, "A1", "n1")
	require.NoError(t, err)
	require.Equal(t, domain.PhaseRecorded, got.Phase)
	list, err := s.Records(ctx, "A1")
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, "n1", list[0].NotificationID)
	alert, err := s.AlertOf(ctx, "n2")
	require.NoError(t, err)
	require.Equal(t, "A1", alert)
	none, err := s.Record(ctx, "A1", "nope")
	require.NoError(t, err)
	require.Zero(t, none.Phase)

	sending := r
	sending.Phase, sending.Attempts = domain.PhaseSending, 2
	mine, err := s.ClaimAttempt(ctx, sending, time.Minute)
	require.NoError(t, err)
	require.True(t, mine)
	got, err = s.Record(ctx, "A1", "n1")
	require.NoError(t, err)
	require.Equal(t, [2]any{domain.PhaseSending, uint32(2)}, [2]any{got.Phase, got.Attempts}, "the claim stores the sending marker")
	rival := sending
	rival.LastError = "the other worker"
	mine, err = s.ClaimAttempt(ctx, rival, time.Minute)
	require.NoError(t, err)
	require.False(t, mine, "an attempt is claimed once")
	got, err = s.Record(ctx, "A1", "n1")
	require.NoError(t, err)
	require.Empty(t, got.LastError, "the worker that lost the claim stores nothing")
	n3 := r
	n3.NotificationID, n3.Attempts = "n3", 1
	mine, err = s.ClaimAttempt(ctx, n3, time.Minute)
	require.NoError(t, err)
	require.True(t, mine)
	alert, err = s.AlertOf(ctx, "n3")
	require.NoError(t, err)
	require.Equal(t, "A1", alert, "a claimed record is indexed by id")
	list, err = s.Records(ctx, "A1")
	require.NoError(t, err)
	require.Len(t, list, 3, "and by alert")

	job := app.Job{Kind: app.JobRecipient, AlertID: "A1", Step: 1, PersonID: "p1"}
	_, err = s.SaveAlert(ctx, domain.Alert{ID: "A1"}, []app.Job{job}, t0)
	require.NoError(t, err)
	n3.Phase = domain.PhaseRecorded
	require.NoError(t, s.PutRecordDone(ctx, n3, job))
	got, err = s.Record(ctx, "A1", "n3")
	require.NoError(t, err)
	require.Equal(t, domain.PhaseRecorded, got.Phase)
	_, due, err := s.NextDue(ctx)
	require.NoError(t, err)
	require.False(t, due, "PutRecordDone removes the job")

	ok, err := s.Epoch(ctx)
	require.NoError(t, err)
	require.False(t, ok)
	locked, err := s.LockRebuild(ctx, "replica-a", time.Minute)
	require.NoError(t, err)
	require.True(t, locked)
	locked, err = s.LockRebuild(ctx, "replica-b", time.Minute)
	require.NoError(t, err)
	require.False(t, locked, "one rebuilder at a time")
	require.NoError(t, s.SetEpoch(ctx))
	renewed, err := s.RenewRebuild(ctx, "replica-b", time.Minute)
	require.NoError(t, err)
	require.False(t, renewed, "only the holder renews the lock")
	require.NoError(t, s.UnlockRebuild(ctx, "replica-b"))
	locked, err = s.LockRebuild(ctx, "replica-b", time.Minute)
	require.NoError(t, err)
	require.False(t, locked, "another replica's unlock leaves the holder's lock be")
	renewed, err = s.RenewRebuild(ctx, "replica-a", time.Minute)
	require.NoError(t, err)
	require.True(t, renewed)
	require.NoError(t, s.UnlockRebuild(ctx, "replica-a"))
	ok, err = s.Epoch(ctx)
	require.NoError(t, err)
	require.True(t, ok)
}

func TestProjectedAlertReadsTheEpochWithTheAlert(t *testing.T) {
	ctx := context.Background()
	rdb := testinfra.NewRedis(t)
	s := New(rdb, "t")
	a := domain.Alert{ID: "A1", Tenant: "RZZ", Applied: []string{"e1"}}
	_, err := s.SaveAlert(ctx, a, nil, t0)
	require.NoError(t, err)

	_, projected, err := s.ProjectedAlert(ctx, "A1")
	require.NoError(t, err)
	require.False(t, projected, "no epoch yet: the projection is not whole")

	require.NoError(t, s.SetEpoch(ctx))
	got, projected, err := s.ProjectedAlert(ctx, "A1")
	require.NoError(t, err)
	require.True(t, projected)
	require.Equal(t, a.ID, got.ID)
	require.Equal(t, a.Applied, got.Applied)
	unknown, projected, err := s.ProjectedAlert(ctx, "nope")
	require.NoError(t, err)
	require.True(t, projected)
	require.Zero(t, unknown.ID)

	require.NoError(t, rdb.FlushDB(ctx).Err())
	_, projected, err = s.ProjectedAlert(ctx, "A1")
	require.NoError(t, err)
	require.False(t, projected, "a flushed Redis has lost the projection")
}

func TestCreateAlertNeverOverwrites(t *testing.T) {
	ctx := context.Background()
	rdb := testinfra.NewRedis(t)
	s := New(rdb, "t")
	_, projected, err := s.CreateAlert(ctx, domain.Alert{ID: "A0"})
	require.NoError(t, err)
	require.False(t, projected, "no epoch: the projection is not whole")
	require.NoError(t, s.SetEpoch(ctx))

	first := domain.Alert{ID: "A1", Tenant: "RZZ", Applied: []string{"e1"}}
	created, projected, err := s.CreateAlert(ctx, first)
	require.NoError(t, err)
	require.True(t, created)
	require.True(t, projected)
	created, _, err = s.CreateAlert(ctx, domain.Alert{ID: "A1", Tenant: "OTHER"})
	require.NoError(t, err)
	require.False(t, created, "the alert exists")
	got, err := s.Alert(ctx, "A1")
	require.NoError(t, err)
	require.Equal(t, first.Tenant, got.Tenant, "an existing projection is never overwritten")
}

func TestSaveAlertTellsWhichJobsItAdded(t *testing.T) {
	ctx := context.Background()
	rdb := testinfra.NewRedis(t)
	b := redisbatch.New(rdb)
	t.Cleanup(b.Close)
	s := New(rdb, "t").PipelinesVia(b).ScriptsVia(b)
	a := domain.Alert{ID: "A1", Tenant: "RZZ"}
	old := app.Job{Kind: app.JobStep, AlertID: "A1", Cause: "e1"}
	_, err := s.SaveAlert(ctx, a, []app.Job{old}, t0)
	require.NoError(t, err)

	a.Routed = true
	critical := app.Job{Kind: app.JobStep, AlertID: "A1", Step: 1, Critical: true, Cause: "e2"}
	added, err := s.SaveAlert(ctx, a, []app.Job{old, critical}, t0.Add(time.Second))
	require.NoError(t, err)
	require.Equal(t, []bool{false, true}, added)
	got, err := s.Alert(ctx, "A1")
	require.NoError(t, err)
	require.Equal(t, a, got, "the projection is stored with the jobs")
	jobs, err := s.Claim(ctx, t0.Add(time.Second), 1, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []app.Job{critical}, jobs, "the critical job is on the critical schedule, claimed first")
	jobs, err = s.Claim(ctx, t0.Add(time.Second), 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []app.Job{old}, jobs, "the job scheduled before keeps its due time")
}

// Renew extends a lease only while the schedule holds the end the holder
// gave it: a job rescheduled (a retry due soon) or done meanwhile is never
// pushed back or brought back.
func TestRenewExtendsOnlyTheLeaseItGave(t *testing.T) {
	ctx := context.Background()
	rdb := testinfra.NewRedis(t)
	b := redisbatch.New(rdb)
	t.Cleanup(b.Close)
	s := New(rdb, "t").PipelinesVia(b).ScriptsVia(b)
	a := domain.Alert{ID: "A1", Tenant: "RZZ", Routed: true}
	held := app.Job{Kind: app.JobStep, AlertID: "A1", Cause: "held"}
	retried := app.Job{Kind: app.JobRecipient, AlertID: "A1", PersonID: "p1", Critical: true}
	finished := app.Job{Kind: app.JobRecipient, AlertID: "A1", PersonID: "p2"}
	lease := t0.Add(5 * time.Second)
	_, err := s.SaveAlert(ctx, a, []app.Job{held, retried, finished}, lease)
	require.NoError(t, err)
	require.NoError(t, s.Reschedule(ctx, retried, t0.Add(time.Second))) // a retry due in a second
	require.NoError(t, s.Done(ctx, finished))

	renewed, err := s.Renew(ctx, []app.Lease{{Job: held, Until: lease}, {Job: retried, Until: lease}, {Job: finished, Until: lease}}, t0.Add(7*time.Second))
	require.NoError(t, err)
	require.Equal(t, []bool{true, false, false}, renewed)

	jobs, err := s.Claim(ctx, t0.Add(6*time.Second), 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []app.Job{retried}, jobs, "the renewed job stays hidden, the retry comes due, the finished job never returns")
	jobs, err = s.Claim(ctx, t0.Add(7*time.Second), 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []app.Job{held}, jobs, "once its renewed lease ends, the held job comes back")
}

// TestRestoreRecordKeepsANewerRecord: the rebuild writes what it read from
// the log; a record written since by a live worker (an outcome, a claim, a
// later attempt) stands, and a record an earlier rebuild restored is
// brought up to date.
func TestRestoreRecordKeepsANewerRecord(t *testing.T) {
	ctx := context.Background()
	s := New(testinfra.NewRedis(t), "t")
	rec := func(nid string, attempts uint32, phase domain.Phase, restored bool) app.Record {
		return app.Record{NotificationID: nid, AlertID: "a1", Attempts: attempts, Phase: phase, Restored: restored, CreatedAt: time.Now()}
	}
	for _, c := range []struct {
		name      string
		live, log app.Record
		want      domain.Phase
		wantTries uint32
	}{
		{"a send recorded after the read stands", rec("n1", 1, domain.PhaseSent, false), rec("n1", 1, domain.PhaseSending, true), domain.PhaseSent, 1},
		{"a live worker's claim stands", rec("n2", 1, domain.PhaseSending, false), rec("n2", 1, domain.PhaseSending, true), domain.PhaseSending, 1},
		{"a later attempt stands", rec("n3", 2, domain.PhaseSending, false), rec("n3", 1, domain.PhaseFailed, false), domain.PhaseSending, 2},
		{"an earlier rebuild's restored attempt is brought up to date", rec("n4", 1, domain.PhaseSending, true), rec("n4", 1, domain.PhaseSent, false), domain.PhaseSent, 1},
		{"an earlier attempt is brought up to date", rec("n5", 1, domain.PhasePending, false), rec("n5", 2, domain.PhaseSending, true), domain.PhaseSending, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.NoError(t, s.PutRecord(ctx, c.live))
			require.NoError(t, s.RestoreRecord(ctx, c.log))
			got, err := s.Record(ctx, "a1", c.live.NotificationID)
			require.NoError(t, err)
			require.Equal(t, c.want, got.Phase)
			require.Equal(t, c.wantTries, got.Attempts)
		})
	}
	// With none there, it writes and indexes.
	require.NoError(t, s.RestoreRecord(ctx, rec("n6", 1, domain.PhaseSending, true)))
	got, err := s.Record(ctx, "a1", "n6")
	require.NoError(t, err)
	require.True(t, got.Restored)
	alert, err := s.AlertOf(ctx, "n6")
	require.NoError(t, err)
	require.Equal(t, "a1", alert)
}
