-- The governance timeline's "who": the acting member of staff's display
-- name and the identity provider that signed them in, as each command
-- recorded them (events.v1.Actor). Staff names, not patient data. Events
-- stored before this migration show them empty until heraldctl rebuild
-- reporting replays the log.

-- +goose Up
ALTER TABLE alert_events ADD COLUMN actor_name text NOT NULL DEFAULT '';
ALTER TABLE alert_events ADD COLUMN actor_idp  text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE alert_events DROP COLUMN actor_idp;
ALTER TABLE alert_events DROP COLUMN actor_name;
