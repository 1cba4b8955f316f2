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

CREATE FUNCTION monitoring_install_schedules()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_job public.monitoring_schedules;
    v_count integer := 0;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        RAISE NOTICE 'pg_cron is not installed in database %: % job(s) not scheduled',
            current_database(), (SELECT count(*) FROM public.monitoring_schedules)
            USING HINT = 'install pg_cron here (cron.database_name) and SELECT monitoring_install_schedules(), '
                         'or run the commands in monitoring_schedules from another scheduler';
        RETURN 0;
    END IF;
    FOR v_job IN SELECT * FROM public.monitoring_schedules ORDER BY job_name LOOP
        -- cron.schedule replaces a job of the same name, so this is idempotent
        PERFORM cron.schedule(v_job.job_name, v_job.schedule, v_job.command);
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION monitoring_install_schedules() IS
'Create or update a pg_cron job for every row of monitoring_schedules; returns how many. Without pg_cron in
this database it schedules nothing, says so in a NOTICE, and returns 0.';

CREATE FUNCTION monitoring_purge_history(p_keep interval DEFAULT '90 days', p_at timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH purged AS (
        DELETE FROM public.monitoring_alerts
        WHERE status = 'resolved' AND resolved_at < p_at - p_keep
        RETURNING 1
    )
    SELECT count(*) FROM purged
$$;
COMMENT ON FUNCTION monitoring_purge_history(interval, timestamptz) IS
'Delete alerts resolved more than p_keep ago, with their deliveries and attempts; returns how many alerts.
Open and acknowledged alerts are never purged.';

INSERT INTO monitoring_schedules (job_name, schedule, command, description) VALUES
(
    'pgalert_purge_history', '17 3 * * *', 'SELECT monitoring_purge_history()',
    'Daily: drop alerts resolved more than 90 days ago, with their delivery history.'
);

SELECT monitoring_install_schedules();

REVOKE EXECUTE ON FUNCTION monitoring_install_schedules(), monitoring_purge_history(interval, timestamptz) FROM PUBLIC;
REVOKE ALL ON monitoring_schedules FROM PUBLIC;
GRANT SELECT ON monitoring_schedules TO monitoring_reader;
GRANT INSERT, UPDATE, DELETE ON monitoring_schedules TO monitoring_admin;
GRANT EXECUTE ON FUNCTION monitoring_install_schedules(), monitoring_purge_history(interval, timestamptz)
TO monitoring_admin;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0002', 'schedules');
