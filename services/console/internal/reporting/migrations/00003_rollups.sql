-- Compliance rollups (issue #21's 2 s target over 10 M alerts): per trust,
-- week (Monday, UTC, of the raise), category, team and referrer, the counts
-- the compliance figures need, the decline reasons, and a histogram of the
-- time to acknowledge. The projector maintains them in the transaction that
-- changes an alert's summary (it adds the new summary's contribution and
-- subtracts the old one's), so they move with the alerts table exactly;
-- reporting_rollup_rows (below) computes the same rows from the alerts
-- table, for the reconciliation (Store.Reconcile) and the repair
-- (Store.RepairRollups).

-- +goose Up
-- reporting_ack_bucket: the histogram bucket of a time to acknowledge in
-- seconds: whole seconds below 64 s, then 64 buckets per doubling (each
-- 1/64 of its lower bound wide). The bucket is its lower bound in seconds.
-- rollup.go's ackBucket is the same function in Go (TestAckBucketSQLMatchesGo).
-- +goose StatementBegin
CREATE FUNCTION reporting_ack_bucket(v double precision) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN s < 64 THEN s ELSE (s >> (58 - position('1' IN s::bit(64)::text))) << (58 - position('1' IN s::bit(64)::text)) END
    FROM (SELECT floor(v)::bigint AS s) a
$$;
-- +goose StatementEnd

CREATE TABLE alert_rollup (
    tenant               text NOT NULL,
    week                 date NOT NULL,
    category             text NOT NULL,
    team_id              text NOT NULL,
    referrer_id          text NOT NULL,
    alerts               bigint NOT NULL,
    cancelled            bigint NOT NULL,
    acknowledged         bigint NOT NULL,
    -- Not cancelled, with an acknowledge-by deadline: acknowledged at or
    -- before it, after it, or not (yet) acknowledged. Whether an
    -- unacknowledged alert is due or pending depends on the time of the
    -- query: the query counts the pending ones from the rows
    -- (alerts_pending, a small partial index).
    in_time              bigint NOT NULL,
    late                 bigint NOT NULL,
    unacknowledged       bigint NOT NULL,
    breached_communicate bigint NOT NULL,
    breached_acknowledge bigint NOT NULL,
    breached_action      bigint NOT NULL,
    failsafe_queued      bigint NOT NULL,
    quarantined          bigint NOT NULL,
    PRIMARY KEY (tenant, week, category, team_id, referrer_id)
);

CREATE TABLE alert_rollup_declines (
    tenant      text NOT NULL,
    week        date NOT NULL,
    category    text NOT NULL,
    team_id     text NOT NULL,
    referrer_id text NOT NULL,
    reason      text NOT NULL,
    declines    bigint NOT NULL,
    PRIMARY KEY (tenant, week, category, team_id, referrer_id, reason)
);

-- One histogram per week and category, per week and team, and per week
-- and referrer (dimension: category, team or referrer; group_key: its
-- value). Not per category, team and referrer together: each such row
-- holds only a few alerts a week, so that histogram would be as large as
-- the alerts table; the category rows alone answer the overall, category,
-- weekly and RCR figures.
CREATE TABLE alert_ack_histogram (
    tenant    text NOT NULL,
    week      date NOT NULL,
    dimension text NOT NULL,
    group_key text NOT NULL,
    bucket    bigint NOT NULL,
    alerts    bigint NOT NULL,
    -- The sum of the bucket's times to acknowledge, in microseconds: a
    -- bucket of one alert gives its time exactly.
    micros    bigint NOT NULL,
    PRIMARY KEY (tenant, dimension, week, group_key, bucket)
);

-- The open alerts whose acknowledge-by deadline may still be ahead: the
-- compliance query's pending count (time-dependent, so not in a rollup).
CREATE INDEX alerts_pending ON alerts (tenant, acknowledge_by) INCLUDE (raised_at, category, team_id, referrer_id)
    WHERE acknowledged_at IS NULL AND cancelled_at IS NULL AND acknowledge_by IS NOT NULL;

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION reporting_rebuild() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE g bigint;
BEGIN
    UPDATE reporting_meta SET generation = generation + 1 WHERE id = 1 RETURNING generation INTO g;
    TRUNCATE alerts, alert_events, alert_rollup, alert_rollup_declines, alert_ack_histogram;
    RETURN g;
END
$$;
-- +goose StatementEnd

-- The rollup rows of one trust's alerts raised in [from, to), computed from
-- the alerts table: what the projector's maintained rows must equal
-- (Store.Reconcile), what a repair writes (Store.RepairRollups), and what
-- the compliance query reads for the part of a period that is not whole
-- weeks.
-- +goose StatementBegin
CREATE FUNCTION reporting_rollup_rows(p_tenant text, p_from timestamptz, p_to timestamptz)
RETURNS SETOF alert_rollup LANGUAGE sql STABLE AS $$
    SELECT tenant, (date_trunc('week', raised_at AT TIME ZONE 'UTC'))::date, category, team_id, referrer_id,
        count(*), count(*) FILTER (WHERE cancelled_at IS NOT NULL), count(*) FILTER (WHERE acknowledged_at IS NOT NULL),
        count(*) FILTER (WHERE cancelled_at IS NULL AND acknowledge_by IS NOT NULL AND acknowledged_at <= acknowledge_by),
        count(*) FILTER (WHERE cancelled_at IS NULL AND acknowledge_by IS NOT NULL AND acknowledged_at > acknowledge_by),
        count(*) FILTER (WHERE cancelled_at IS NULL AND acknowledge_by IS NOT NULL AND acknowledged_at IS NULL),
        count(*) FILTER (WHERE breached_communicate), count(*) FILTER (WHERE breached_acknowledge),
        count(*) FILTER (WHERE breached_action), count(*) FILTER (WHERE failsafe_queued_at IS NOT NULL),
        count(*) FILTER (WHERE quarantined)
    FROM alerts WHERE tenant = p_tenant AND raised_at >= p_from AND raised_at < p_to
    GROUP BY 1, 2, 3, 4, 5
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION reporting_rollup_decline_rows(p_tenant text, p_from timestamptz, p_to timestamptz)
RETURNS SETOF alert_rollup_declines LANGUAGE sql STABLE AS $$
    SELECT tenant, (date_trunc('week', raised_at AT TIME ZONE 'UTC'))::date, category, team_id, referrer_id, reason, count(*)
    FROM alerts, unnest(declined_reasons) AS reason
    WHERE tenant = p_tenant AND raised_at >= p_from AND raised_at < p_to AND cardinality(declined_reasons) > 0
    GROUP BY 1, 2, 3, 4, 5, 6
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION reporting_ack_histogram_rows(p_tenant text, p_from timestamptz, p_to timestamptz)
RETURNS SETOF alert_ack_histogram LANGUAGE sql STABLE AS $$
    SELECT tenant, week, dim, gk, bucket, count(*), sum(micros)::bigint
    FROM (SELECT tenant, (date_trunc('week', raised_at AT TIME ZONE 'UTC'))::date AS week,
            category, team_id, referrer_id, reporting_ack_bucket(ack_seconds) AS bucket,
            (extract(epoch FROM acknowledged_at - coalesce(clock_start, raised_at)) * 1000000)::bigint AS micros
        FROM alerts WHERE tenant = p_tenant AND raised_at >= p_from AND raised_at < p_to AND ack_seconds IS NOT NULL) a,
        LATERAL (VALUES ('category', a.category), ('team', a.team_id), ('referrer', a.referrer_id)) AS d(dim, gk)
    GROUP BY 1, 2, 3, 4, 5
$$;
-- +goose StatementEnd

-- A store upgraded from migration 2 gets its rollups from its rows.
INSERT INTO alert_rollup SELECT r.* FROM (SELECT DISTINCT tenant FROM alerts) t,
    reporting_rollup_rows(t.tenant, '-infinity', 'infinity') r;
INSERT INTO alert_rollup_declines SELECT r.* FROM (SELECT DISTINCT tenant FROM alerts) t,
    reporting_rollup_decline_rows(t.tenant, '-infinity', 'infinity') r;
INSERT INTO alert_ack_histogram SELECT r.* FROM (SELECT DISTINCT tenant FROM alerts) t,
    reporting_ack_histogram_rows(t.tenant, '-infinity', 'infinity') r;

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION reporting_rebuild() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE g bigint;
BEGIN
    UPDATE reporting_meta SET generation = generation + 1 WHERE id = 1 RETURNING generation INTO g;
    TRUNCATE alerts, alert_events;
    RETURN g;
END
$$;
-- +goose StatementEnd
DROP FUNCTION reporting_ack_histogram_rows(text, timestamptz, timestamptz);
DROP FUNCTION reporting_rollup_decline_rows(text, timestamptz, timestamptz);
DROP FUNCTION reporting_rollup_rows(text, timestamptz, timestamptz);
DROP INDEX alerts_pending;
DROP TABLE alert_ack_histogram;
DROP TABLE alert_rollup_declines;
DROP TABLE alert_rollup;
DROP FUNCTION reporting_ack_bucket(double precision);
