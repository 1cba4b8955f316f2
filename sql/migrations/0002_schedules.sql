-- pgalert 0002: scheduled jobs as data, installed into pg_cron when it is there; history retention.
--
-- pg_cron can live in one database only (cron.database_name). Where it is not installed, the jobs are listed
-- in monitoring_schedules and a NOTICE says so; after installing pg_cron, SELECT monitoring_install_schedules().

CREATE TABLE monitoring_schedules (
    job_name text PRIMARY KEY,
    schedule text NOT NULL,
    command text NOT NULL CONSTRAINT command_is_one_select CHECK (command ~ '^SELECT [a-z_]+\(.*\)$'),
    description text NOT NULL DEFAULT ''
);
COMMENT ON TABLE monitoring_schedules IS
'The pg_cron jobs pgalert needs. Each command is a one-line call of a tested function; edit the schedule here
and run monitoring_install_schedules() to apply it.';

INSERT INTO monitoring_schedules (job_name, schedule, command, description) VALUES
(
    'pgalert_purge_history', '17 3 * * *', 'SELECT monitoring_purge_history()',
    'Daily: drop alerts resolved more than 90 days ago, with their delivery history.'
);

REVOKE ALL ON monitoring_schedules FROM PUBLIC;
GRANT SELECT ON monitoring_schedules TO monitoring_reader;
GRANT INSERT, UPDATE, DELETE ON monitoring_schedules TO monitoring_admin;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0002', 'schedules');
