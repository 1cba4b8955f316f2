-- pgalert 0024: every process works as a login holding only its documented role, and each role does no more
-- than that role says (#22).

-- Every pgalert process reads which release built the database before it works (a dispatcher older than the
-- schema refuses to claim). Versions and names are no secret.
GRANT SELECT ON _monitoring_migrations TO monitoring_reader, monitoring_dispatcher, monitoring_inbound;

-- An inhibition's source alert, by id: two alerts raised in one statement under two symmetric inhibit rules would
-- each hold the other for ever, and finding such a cycle must not parse held_by's text.
ALTER TABLE monitoring_notification_holds ADD COLUMN source_alert_id bigint;
UPDATE monitoring_notification_holds
SET source_alert_id = substring(held_by FROM ': alert ([0-9]+)$')::bigint
WHERE reason = 'inhibition';
COMMENT ON COLUMN monitoring_notification_holds.source_alert_id IS
'For an inhibition, the unresolved alert that holds this one (held_by names it too, for people).';
-- its return type gains source_alert_id (sql/hygiene.sql)
DROP FUNCTION IF EXISTS _monitoring_holds_for(monitoring_alerts, timestamptz);

-- pg_cron's own heartbeat: a job every minute stamps this row, so anyone (the dispatchers first) can tell when
-- pgalert's scheduled jobs stop running: pg_cron not loaded, another cron.database_name, a stale job cache, a
-- standby. The row starts at install time, so jobs that never ran are noticed too.
CREATE TABLE monitoring_scheduler_heartbeat (
    only_row boolean PRIMARY KEY DEFAULT TRUE CONSTRAINT one_heartbeat_row CHECK (only_row),
    installed_at timestamptz NOT NULL DEFAULT now(),
    beat_at timestamptz
);
INSERT INTO monitoring_scheduler_heartbeat DEFAULT VALUES;
COMMENT ON TABLE monitoring_scheduler_heartbeat IS
'One row: beat_at is when pg_cron last ran pgalert''s heartbeat job (NULL: never since installed_at). See
monitoring_scheduler_status().';
REVOKE ALL ON monitoring_scheduler_heartbeat FROM PUBLIC;
GRANT SELECT ON monitoring_scheduler_heartbeat TO monitoring_reader;

INSERT INTO monitoring_schedules (job_name, schedule, command, description) VALUES (
    'pgalert_heartbeat', '* * * * *', 'SELECT monitoring_scheduler_heartbeat()',
    'Every minute: prove that pg_cron runs pgalert''s jobs (monitoring_scheduler_status).'
);

INSERT INTO _monitoring_migrations (version, name) VALUES ('0024', 'hardening');
