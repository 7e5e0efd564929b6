package reporting

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// The event columns, in the order of eventArgs and scanEvent.
const eventColumns = `event_id, alert_id, tenant, type, occurred_at, log_partition, log_offset,
	actor_id, actor_role, recipient_id, channel, notification_id, delivery, step, repeat, reason,
	clock, deadline, category, local_category, policy_id, policy_version, accession, referrer_id,
	team_id, clock_start, communicate_by, acknowledge_by, action_by, actor_name, actor_idp`

// insertEvents stores a batch (one array per column) and returns the alert
// id of each event that was new.
const insertEvents = `INSERT INTO alert_events (` + eventColumns + `)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::int[], $7::bigint[],
	$8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::int[], $15::int[], $16::text[],
	$17::text[], $18::timestamptz[], $19::text[], $20::text[], $21::text[], $22::text[], $23::text[], $24::text[],
	$25::text[], $26::timestamptz[], $27::timestamptz[], $28::timestamptz[], $29::timestamptz[],
	$30::text[], $31::text[])
ON CONFLICT (event_id) DO NOTHING
RETURNING alert_id`

func eventArgs(events []Event) []any {
	n := len(events)
	var (
		id, alert, tenant, typ                          = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		at                                              = make([]time.Time, n)
		part                                            = make([]int32, n)
		off                                             = make([]int64, n)
		actor, role, recip, ch, nid, deliv, reason, clk = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		step, rep                                       = make([]*int, n), make([]*int, n)
		deadline, start, comm, ack, act                 = make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n)
		cat, local, pid, pver, acc, ref, team           = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		actorName, actorIdP                             = make([]string, n), make([]string, n)
	)
	for i, e := range events {
		id[i], alert[i], tenant[i], typ[i], at[i], part[i], off[i] = e.EventID, e.AlertID, e.Tenant, e.Type, e.OccurredAt, int32(e.Partition), e.Offset
		actor[i], role[i], recip[i], ch[i], nid[i], deliv[i] = e.ActorID, e.ActorRole, e.RecipientID, e.Channel, e.NotificationID, e.Delivery
		step[i], rep[i], reason[i], clk[i], deadline[i] = e.Step, e.Repeat, e.Reason, e.Clock, e.Deadline
		cat[i], local[i], pid[i], pver[i], acc[i], ref[i], team[i] = e.Category, e.LocalCategory, e.PolicyID, e.PolicyVersion, e.Accession, e.ReferrerID, e.TeamID
		start[i], comm[i], ack[i], act[i] = e.ClockStart, e.CommunicateBy, e.AcknowledgeBy, e.ActionBy
		actorName[i], actorIdP[i] = e.ActorName, e.ActorIdentityProvider
	}
	return []any{id, alert, tenant, typ, at, part, off, actor, role, recip, ch, nid, deliv, step, rep, reason,
		clk, deadline, cat, local, pid, pver, acc, ref, team, start, comm, ack, act, actorName, actorIdP}
}

type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// queryEvents reads events with a WHERE/ORDER clause.
func queryEvents(ctx context.Context, q queryer, where string, args ...any) ([]Event, error) {
	rows, err := q.Query(ctx, `SELECT `+eventColumns+` FROM alert_events `+where, args...)
	if err != nil {
		return nil, unavailable("read events", err)
	}
	out, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, unavailable("read events", err)
	}
	return out, nil
}

// scanEvent reads a row of eventColumns.
func scanEvent(r pgx.CollectableRow) (Event, error) {
	var e Event
	var part int32
	err := r.Scan(&e.EventID, &e.AlertID, &e.Tenant, &e.Type, &e.OccurredAt, &part, &e.Offset,
		&e.ActorID, &e.ActorRole, &e.RecipientID, &e.Channel, &e.NotificationID, &e.Delivery, &e.Step, &e.Repeat, &e.Reason,
		&e.Clock, &e.Deadline, &e.Category, &e.LocalCategory, &e.PolicyID, &e.PolicyVersion, &e.Accession, &e.ReferrerID,
		&e.TeamID, &e.ClockStart, &e.CommunicateBy, &e.AcknowledgeBy, &e.ActionBy, &e.ActorName, &e.ActorIdentityProvider)
	e.Partition = int(part)
	e.OccurredAt = e.OccurredAt.UTC()
	return e, err
}

// The summary columns, in the order of summaryArgs and scanSummary
// (ack_seconds is generated).
const summaryColumns = `alert_id, tenant, reference, accession, category, local_category, state,
	raised_at, routed_at, acknowledged_at, actioned_at, failsafe_queued_at, closed_at, cancelled_at,
	clock_start, communicate_by, acknowledge_by, action_by, acknowledged_by, declined_reasons,
	breached_communicate, breached_acknowledge, breached_action, quarantined, policy_id, policy_version,
	team_id, referrer_id, events, last_event_at`

// upsertSummaries replaces the rows of the summaries given (one array per
// column; declined reasons as one text per alert, joined by commas).
const upsertSummaries = `INSERT INTO alerts (` + summaryColumns + `)
SELECT a, t, rf, acc, cat, lc, st, ra, ro, ak, ac, fq, cl, ca, cs, cb, ab, xb, akb,
	CASE WHEN dr = '' THEN '{}'::text[] ELSE string_to_array(dr, ',') END,
	bc, ba, bx, q, pid, pv, tm, rr, ev, le
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
	$8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], $13::timestamptz[], $14::timestamptz[],
	$15::timestamptz[], $16::timestamptz[], $17::timestamptz[], $18::timestamptz[], $19::text[], $20::text[],
	$21::bool[], $22::bool[], $23::bool[], $24::bool[], $25::text[], $26::text[], $27::text[], $28::text[], $29::int[], $30::timestamptz[])
	AS u(a, t, rf, acc, cat, lc, st, ra, ro, ak, ac, fq, cl, ca, cs, cb, ab, xb, akb, dr, bc, ba, bx, q, pid, pv, tm, rr, ev, le)
ON CONFLICT (alert_id) DO UPDATE SET (` + summaryColumns + `) = (
	EXCLUDED.alert_id, EXCLUDED.tenant, EXCLUDED.reference, EXCLUDED.accession, EXCLUDED.category, EXCLUDED.local_category, EXCLUDED.state,
	EXCLUDED.raised_at, EXCLUDED.routed_at, EXCLUDED.acknowledged_at, EXCLUDED.actioned_at, EXCLUDED.failsafe_queued_at, EXCLUDED.closed_at, EXCLUDED.cancelled_at,
	EXCLUDED.clock_start, EXCLUDED.communicate_by, EXCLUDED.acknowledge_by, EXCLUDED.action_by, EXCLUDED.acknowledged_by, EXCLUDED.declined_reasons,
	EXCLUDED.breached_communicate, EXCLUDED.breached_acknowledge, EXCLUDED.breached_action, EXCLUDED.quarantined, EXCLUDED.policy_id, EXCLUDED.policy_version,
	EXCLUDED.team_id, EXCLUDED.referrer_id, EXCLUDED.events, EXCLUDED.last_event_at)`

func summaryArgs(sums []Summary) []any {
	n := len(sums)
	cols := make([][]string, 11)
	for i := range cols {
		cols[i] = make([]string, n)
	}
	times := make([][]*time.Time, 11)
	for i := range times {
		times[i] = make([]*time.Time, n)
	}
	raised, last := make([]time.Time, n), make([]time.Time, n)
	bools := make([][]bool, 4)
	for i := range bools {
		bools[i] = make([]bool, n)
	}
	events := make([]int32, n)
	for i, s := range sums {
		for j, v := range []string{s.AlertID, s.Tenant, s.Reference, s.Accession, s.Category, s.LocalCategory, s.State,
			s.AcknowledgedBy, joinReasons(s.DeclinedReasons), s.PolicyID, s.PolicyVersion} {
			cols[j][i] = v
		}
		for j, v := range []*time.Time{s.RoutedAt, s.AcknowledgedAt, s.ActionedAt, s.FailsafeQueuedAt, s.ClosedAt, s.CancelledAt,
			s.ClockStart, s.CommunicateBy, s.AcknowledgeBy, s.ActionBy, nil} {
			times[j][i] = v
		}
		for j, v := range []bool{s.BreachedCommunicate, s.BreachedAcknowledge, s.BreachedAction, s.Quarantined} {
			bools[j][i] = v
		}
		raised[i], last[i], events[i] = s.RaisedAt, s.LastEventAt, int32(s.Events)
	}
	team, referrer := make([]string, n), make([]string, n)
	for i, s := range sums {
		team[i], referrer[i] = s.TeamID, s.ReferrerID
	}
	return []any{cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6],
		raised, times[0], times[1], times[2], times[3], times[4], times[5],
		times[6], times[7], times[8], times[9], cols[7], cols[8],
		bools[0], bools[1], bools[2], bools[3], cols[9], cols[10], team, referrer, events, last}
}

// joinReasons joins decline reasons (fixed words without commas).
func joinReasons(r []string) string {
	out := ""
	for i, s := range r {
		if i > 0 {
			out += ","
		}
		out += s
	}
	return out
}

// scanSummary reads a row of summaryColumns.
func scanSummary(r pgx.CollectableRow) (Summary, error) {
	var s Summary
	var events int32
	err := r.Scan(&s.AlertID, &s.Tenant, &s.Reference, &s.Accession, &s.Category, &s.LocalCategory, &s.State,
		&s.RaisedAt, &s.RoutedAt, &s.AcknowledgedAt, &s.ActionedAt, &s.FailsafeQueuedAt, &s.ClosedAt, &s.CancelledAt,
		&s.ClockStart, &s.CommunicateBy, &s.AcknowledgeBy, &s.ActionBy, &s.AcknowledgedBy, &s.DeclinedReasons,
		&s.BreachedCommunicate, &s.BreachedAcknowledge, &s.BreachedAction, &s.Quarantined, &s.PolicyID, &s.PolicyVersion,
		&s.TeamID, &s.ReferrerID, &events, &s.LastEventAt)
	s.Events = int(events)
	s.RaisedAt, s.LastEventAt = s.RaisedAt.UTC(), s.LastEventAt.UTC()
	if len(s.DeclinedReasons) == 0 {
		s.DeclinedReasons = nil
	}
	return s, err
}
