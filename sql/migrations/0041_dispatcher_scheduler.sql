-- pgalert's scheduled jobs run under pg_cron or, where pg_cron cannot run them, in the dispatchers (#37, 1).
--
-- A dispatcher runs a job's tick (the minute its schedule matched) only after moving the job's last_tick
-- forward, in the same transaction as the job's work: a tick is run once across any number of dispatchers,
-- and a dispatcher killed mid-tick rolls both back, leaving the tick to the next one.
CREATE TABLE monitoring_scheduler_ticks (
    job_name text PRIMARY KEY REFERENCES monitoring_schedules (job_name) ON DELETE CASCADE ON UPDATE CASCADE,
    last_tick timestamptz NOT NULL,
    ran_at timestamptz NOT NULL DEFAULT now(),
    ran_by text NOT NULL,
    last_error text
);
COMMENT ON TABLE monitoring_scheduler_ticks IS
'The last tick each job ran in the dispatchers (pgalert dispatch --scheduler): when, by which dispatcher, and
its error (NULL: it succeeded). pg_cron''s runs are in cron.job_run_details.';
COMMENT ON COLUMN monitoring_scheduler_ticks.last_tick IS
'The minute whose run this was: a dispatcher runs a later tick only, so each tick runs once.';
REVOKE ALL ON monitoring_scheduler_ticks FROM PUBLIC;
GRANT SELECT ON monitoring_scheduler_ticks TO monitoring_reader;

-- beat_at is any scheduler's beat (what stalls page about); cron_beat_at pg_cron's alone (what tells the
-- dispatchers in --scheduler auto that pg_cron runs the jobs and they need not)
ALTER TABLE monitoring_scheduler_heartbeat ADD COLUMN cron_beat_at timestamptz;
UPDATE monitoring_scheduler_heartbeat SET cron_beat_at = beat_at;
COMMENT ON TABLE monitoring_scheduler_heartbeat IS
'One row: beat_at is when pgalert''s heartbeat job last ran (NULL: never since installed_at), under pg_cron or in
a dispatcher; cron_beat_at when pg_cron last ran it. See monitoring_scheduler_status().';

INSERT INTO _monitoring_migrations (version, name) VALUES ('0041', 'dispatcher_scheduler');
