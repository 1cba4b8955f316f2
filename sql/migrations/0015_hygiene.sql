-- pgalert 0015: notification hygiene. Silences, maintenance windows and inhibition rules hold an alert's
-- notifications (the alert itself is stored, deduplicated and counted as always); a resolve or acknowledge of
-- an alert whose trigger went out is never held. Every hold and its release is recorded.
-- The decisions live in sql/hygiene.sql.

ALTER TABLE monitoring_deliveries DROP CONSTRAINT delivery_status_is_known;
ALTER TABLE monitoring_deliveries ADD CONSTRAINT delivery_status_is_known
CHECK (status IN ('pending', 'sending', 'succeeded', 'failed', 'skipped', 'held'));
COMMENT ON COLUMN monitoring_deliveries.status IS
'pending: waiting for next_attempt_at; sending: claimed, and next_attempt_at is the lease expiry after which
another dispatcher takes it over; succeeded; failed: final error or attempts exhausted (see last_error);
skipped: not sent, with the reason in last_error (the provider is not configured, or the alert was acknowledged
or resolved while its notification was held); held: a silence, maintenance window or inhibition holds it (see
monitoring_notification_holds); it becomes pending when nothing holds it and the alert is still open.';
CREATE INDEX monitoring_deliveries_held ON monitoring_deliveries (alert_id) WHERE status = 'held';

CREATE TABLE monitoring_silences (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    matchers jsonb NOT NULL,
    starts_at timestamptz NOT NULL DEFAULT now(),
    ends_at timestamptz NOT NULL,
    created_by text NOT NULL DEFAULT session_user,
    comment text NOT NULL CONSTRAINT silence_says_why CHECK (btrim(comment) <> ''),
    created_at timestamptz NOT NULL DEFAULT now(),
    expired_at timestamptz,
    expired_by text,
    -- the alert_type a matcher names exactly, if one does: most silences do, and every other alert passes them
    -- by this one comparison
    alert_type_equals text GENERATED ALWAYS AS (
        jsonb_path_query_first(matchers, '$[*] ? (@.field == "alert_type" && @.op == "=").value') #>> '{}'
    ) STORED,
    CONSTRAINT silence_ends_after_it_starts CHECK (ends_at > starts_at)
);
CREATE INDEX monitoring_silences_active ON monitoring_silences (ends_at) WHERE expired_at IS NULL;
COMMENT ON TABLE monitoring_silences IS
'Hold the notifications of alerts whose fields match every matcher, from starts_at to ends_at (or until expired
early). Matchers: [{"field": "alert_type" | "severity" | "source" | "dedup_key" | "labels.NAME" | "details.NAME",
"op": "=" | "!=" | "=~" | "!~", "value": "..."}]; regexes match the whole value, as in Alertmanager. Expired
silences are kept for history.';

CREATE TABLE monitoring_maintenance_windows (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CONSTRAINT window_name_is_simple CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    matchers jsonb NOT NULL,
    time_zone text NOT NULL DEFAULT 'UTC',
    starts_at timestamptz,
    ends_at timestamptz,
    days_of_week integer[],
    start_time time,
    duration interval,
    comment text NOT NULL DEFAULT '',
    created_by text NOT NULL DEFAULT session_user,
    enabled boolean NOT NULL DEFAULT TRUE,
    CONSTRAINT window_is_one_off_or_weekly CHECK (
        (
            starts_at IS NOT NULL AND ends_at > starts_at
            AND days_of_week IS NULL AND start_time IS NULL AND duration IS NULL
        )
        OR (
            starts_at IS NULL AND ends_at IS NULL
            AND days_of_week <> '{}' AND days_of_week <@ ARRAY[1, 2, 3, 4, 5, 6, 7]
            AND start_time IS NOT NULL AND duration > interval '0' AND duration <= interval '7 days'
        )
    )
);
COMMENT ON TABLE monitoring_maintenance_windows IS
'Planned work: hold the notifications of matching alerts (matchers as in monitoring_silences) during a one-off
range (starts_at, ends_at) or every week on days_of_week (ISO: 1 = Monday) from start_time for duration, on the
wall clock of time_zone (so 02:00 stays 02:00 across daylight-saving changes).';

CREATE TABLE monitoring_inhibit_rules (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CONSTRAINT inhibit_rule_name_is_simple CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    source_matchers jsonb NOT NULL,
    target_matchers jsonb NOT NULL,
    equal text[] NOT NULL DEFAULT '{}',
    enabled boolean NOT NULL DEFAULT TRUE,
    -- the source's alert_type when a matcher names it exactly: sources are then found by index, not by scanning
    -- every open alert (during a storm, thousands)
    source_alert_type text GENERATED ALWAYS AS (
        jsonb_path_query_first(source_matchers, '$[*] ? (@.field == "alert_type" && @.op == "=").value') #>> '{}'
    ) STORED
);
CREATE INDEX monitoring_alerts_open_by_type ON monitoring_alerts (alert_type) WHERE status <> 'resolved';
COMMENT ON TABLE monitoring_inhibit_rules IS
'While an unresolved alert matches source_matchers, hold the notifications of new alerts matching
target_matchers whose fields named in equal agree with it (as in Alertmanager: an alert matching both sides
cannot be inhibited by another that does too, itself included). When the source resolves, held alerts that are
still open are notified.';

CREATE TABLE monitoring_notification_holds (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id bigint NOT NULL REFERENCES monitoring_alerts (id) ON DELETE CASCADE,
    reason text NOT NULL CONSTRAINT hold_reason_is_known CHECK (reason IN ('silence', 'maintenance', 'inhibition')),
    held_by text NOT NULL,
    held_at timestamptz NOT NULL,
    released_at timestamptz,
    release_reason text
);
CREATE INDEX monitoring_notification_holds_open ON monitoring_notification_holds (alert_id) WHERE released_at IS NULL;
CREATE UNIQUE INDEX one_open_hold_per_cause ON monitoring_notification_holds (alert_id, reason, held_by)
WHERE released_at IS NULL;
COMMENT ON TABLE monitoring_notification_holds IS
'Why a page did not go out: one row per alert and cause (held_by names the silence, window, or inhibition rule
and source alert), when it was held and when and why it was released (the cause ended, or the alert was
acknowledged or resolved meanwhile).';

REVOKE ALL ON monitoring_silences, monitoring_maintenance_windows, monitoring_inhibit_rules,
monitoring_notification_holds FROM PUBLIC;
GRANT SELECT ON monitoring_silences, monitoring_maintenance_windows, monitoring_inhibit_rules,
monitoring_notification_holds TO monitoring_reader;
GRANT INSERT, UPDATE, DELETE ON monitoring_maintenance_windows, monitoring_inhibit_rules TO monitoring_admin;
GRANT INSERT ON monitoring_silences TO monitoring_admin;  -- ended with monitoring_expire_silence, never deleted

INSERT INTO monitoring_schedules (job_name, schedule, command, description) VALUES (
    'pgalert_release_holds', '* * * * *', 'SELECT monitoring_release_holds()',
    'Every minute: notify the held alerts whose silence or maintenance window has ended and that are still open.'
);

INSERT INTO _monitoring_migrations (version, name) VALUES ('0015', 'hygiene');
