-- The reporting read model (services/console/internal/reporting): every
-- alert's summary and its events, projected from the event log. No patient
-- data: no names, NHS numbers, dates of birth, report text or free text
-- typed by people (notes, actions, close reasons); the console fetches
-- those live from acknowledgement's GetAlert.

-- +goose Up
-- generation counts rebuilds: the projector consumes with the group
-- herald-reporting-g<generation>, so a rebuild (a new generation) replays the
-- log from its start, and a batch of an older generation is refused.
CREATE TABLE reporting_meta (
    id         int PRIMARY KEY CHECK (id = 1),
    generation bigint NOT NULL
);
INSERT INTO reporting_meta (id, generation) VALUES (1, 1);

-- One row per event (event ids are deterministic: a redelivered or repeated
-- event is the same row).
CREATE TABLE alert_events (
    event_id        text PRIMARY KEY,
    alert_id        text NOT NULL,
    tenant          text NOT NULL,
    type            text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    log_partition   int NOT NULL,
    log_offset      bigint NOT NULL,
    actor_id        text NOT NULL DEFAULT '',
    actor_role      text NOT NULL DEFAULT '',
    recipient_id    text NOT NULL DEFAULT '',
    channel         text NOT NULL DEFAULT '',
    step            int,
    repeat          int,
    notification_id text NOT NULL DEFAULT '',
    delivery        text NOT NULL DEFAULT '',
    reason          text NOT NULL DEFAULT '',
    clock           text NOT NULL DEFAULT '',
    deadline        timestamptz,
    category        text NOT NULL DEFAULT '',
    local_category  text NOT NULL DEFAULT '',
    policy_id       text NOT NULL DEFAULT '',
    policy_version  text NOT NULL DEFAULT '',
    accession       text NOT NULL DEFAULT '',
    referrer_id     text NOT NULL DEFAULT '',
    team_id         text NOT NULL DEFAULT '',
    clock_start     timestamptz,
    communicate_by  timestamptz,
    acknowledge_by  timestamptz,
    action_by       timestamptz
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, log_partition, log_offset);

-- One row per alert: the fold of its events (reporting.Fold).
CREATE TABLE alerts (
    alert_id             text PRIMARY KEY,
    tenant               text NOT NULL,
    reference            text NOT NULL DEFAULT '',
    accession            text NOT NULL DEFAULT '',
    category             text NOT NULL DEFAULT '',
    local_category       text NOT NULL DEFAULT '',
    state                text NOT NULL,
    raised_at            timestamptz NOT NULL,
    routed_at            timestamptz,
    acknowledged_at      timestamptz,
    actioned_at          timestamptz,
    failsafe_queued_at   timestamptz,
    closed_at            timestamptz,
    cancelled_at         timestamptz,
    clock_start          timestamptz,
    communicate_by       timestamptz,
    acknowledge_by       timestamptz,
    action_by            timestamptz,
    acknowledged_by      text NOT NULL DEFAULT '',
    declined_reasons     text[] NOT NULL DEFAULT '{}',
    breached_communicate boolean NOT NULL DEFAULT false,
    breached_acknowledge boolean NOT NULL DEFAULT false,
    breached_action      boolean NOT NULL DEFAULT false,
    quarantined          boolean NOT NULL DEFAULT false,
    policy_id            text NOT NULL DEFAULT '',
    policy_version       text NOT NULL DEFAULT '',
    team_id              text NOT NULL DEFAULT '',
    referrer_id          text NOT NULL DEFAULT '',
    events               int NOT NULL,
    last_event_at        timestamptz NOT NULL,
    -- Seconds from the start of the category's clocks to the acknowledgement.
    ack_seconds          double precision GENERATED ALWAYS AS
                         (extract(epoch FROM acknowledged_at - coalesce(clock_start, raised_at))) STORED
);
-- The compliance queries read one trust over a period: this index covers
-- them (an index-only scan, no heap visit once vacuumed).
CREATE INDEX alerts_tenant_raised ON alerts (tenant, raised_at)
    INCLUDE (category, team_id, referrer_id, acknowledged_at, acknowledge_by, cancelled_at,
             ack_seconds, breached_communicate, breached_acknowledge, breached_action,
             failsafe_queued_at, quarantined);
CREATE INDEX alerts_tenant_accession ON alerts (tenant, accession);
CREATE INDEX alerts_tenant_reference ON alerts (tenant, reference);

-- reporting_rebuild empties the read model and starts a new generation:
-- the projector then replays the whole log (heraldctl rebuild reporting).
-- +goose StatementBegin
CREATE FUNCTION reporting_rebuild() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE g bigint;
BEGIN
    UPDATE reporting_meta SET generation = generation + 1 WHERE id = 1 RETURNING generation INTO g;
    TRUNCATE alerts, alert_events;
    RETURN g;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION reporting_rebuild();
DROP TABLE alerts;
DROP TABLE alert_events;
DROP TABLE reporting_meta;
