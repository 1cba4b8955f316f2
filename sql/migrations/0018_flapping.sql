-- pgalert 0018: flapping. An alert key that opens and resolves again and again is marked flapping: its alert is
-- held open (one notification that it flaps instead of a stream of trigger/resolve pairs) until it has been quiet
-- for settle_after, and then one notification says how it settled. The decisions live in sql/flapping.sql.

CREATE TABLE monitoring_flap_rules (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CONSTRAINT flap_rule_name_is_simple CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    matchers jsonb NOT NULL,
    state_changes integer NOT NULL DEFAULT 6
    CONSTRAINT flapping_takes_some_changes CHECK (state_changes BETWEEN 3 AND 1000),
    within interval NOT NULL DEFAULT '1 hour'
    CONSTRAINT flap_window_is_sane CHECK (within > interval '0' AND within <= interval '7 days'),
    settle_after interval NOT NULL DEFAULT '30 minutes'
    CONSTRAINT settle_after_a_minute CHECK (settle_after >= interval '1 minute' AND settle_after <= interval '7 days'),
    position integer NOT NULL DEFAULT 100,
    enabled boolean NOT NULL DEFAULT TRUE,
    comment text NOT NULL DEFAULT ''
);
COMMENT ON TABLE monitoring_flap_rules IS
'Flapping detection for alerts matching matchers (as in monitoring_silences; the lowest position wins): when an
alert opens and its dedup_key changed state (opened or resolved) state_changes times within the window
`within`, it is marked flapping. A flapping alert stays open: resolves by rules and HTTP clients (via rule, api,
alertmanager) are held, repeats merge into it, and its one notification says it flaps. When the key has not
changed state for settle_after it settles: resolved then if its last word was a resolve (at that resolve''s
time), otherwise notified once more as still firing. A person''s resolve ends it at once.';

CREATE TABLE monitoring_flap_changes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dedup_key text NOT NULL,
    alert_id bigint NOT NULL REFERENCES monitoring_alerts (id) ON DELETE CASCADE,
    change text NOT NULL CONSTRAINT flap_change_is_known CHECK (change IN ('opened', 'resolved')),
    changed_at timestamptz NOT NULL
);
CREATE INDEX monitoring_flap_changes_by_key ON monitoring_flap_changes (dedup_key, changed_at);
CREATE INDEX monitoring_flap_changes_by_alert ON monitoring_flap_changes (alert_id);
COMMENT ON TABLE monitoring_flap_changes IS
'The state changes of alerts that a flap rule watches: what flapping is counted from.';

CREATE TABLE monitoring_flapping (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id bigint NOT NULL REFERENCES monitoring_alerts (id) ON DELETE CASCADE,
    rule_id bigint NOT NULL REFERENCES monitoring_flap_rules (id) ON DELETE CASCADE,
    dedup_key text NOT NULL,
    started_at timestamptz NOT NULL,
    state_changes integer NOT NULL,
    last_change_at timestamptz NOT NULL,
    state text NOT NULL DEFAULT 'firing' CONSTRAINT flap_state_is_known CHECK (state IN ('firing', 'resolved')),
    held_resolve jsonb,
    settled_at timestamptz,
    settle_reason text,
    CONSTRAINT a_held_resolve_only_when_resolved CHECK ((state = 'resolved') = (held_resolve IS NOT NULL))
);
CREATE UNIQUE INDEX one_flapping_episode_per_alert ON monitoring_flapping (alert_id) WHERE settled_at IS NULL;
CREATE INDEX monitoring_flapping_by_alert ON monitoring_flapping (alert_id, id);
COMMENT ON TABLE monitoring_flapping IS
'Flapping episodes: the alert held open, since when, how many state changes so far, its state now (firing, or
resolved with the held resolve), and when and how it settled.';

REVOKE ALL ON monitoring_flap_rules, monitoring_flap_changes, monitoring_flapping FROM PUBLIC;
GRANT SELECT ON monitoring_flap_rules, monitoring_flap_changes, monitoring_flapping TO monitoring_reader;
GRANT INSERT, UPDATE, DELETE ON monitoring_flap_rules TO monitoring_admin;
-- the claim says that an alert flaps as it is sent
GRANT SELECT ON monitoring_flapping TO monitoring_dispatcher;

INSERT INTO monitoring_schedules (job_name, schedule, command, description) VALUES (
    'pgalert_settle_flapping', '* * * * *', 'SELECT monitoring_settle_flapping()',
    'Every minute: settle the flapping alerts that have been quiet for their settle_after.'
);

INSERT INTO _monitoring_migrations (version, name) VALUES ('0018', 'flapping');
