-- Scheduled jobs: the rows of monitoring_schedules, installed into pg_cron where it is.
--
-- pg_cron can live in one database only (cron.database_name). Where it is not installed, the jobs are listed
-- in monitoring_schedules and a NOTICE says so; after installing pg_cron, SELECT monitoring_install_schedules().

CREATE OR REPLACE FUNCTION monitoring_install_schedules()
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
    -- the jobs of sql rules deleted, disabled or turned into another type
    PERFORM cron.unschedule(j.jobid)
    FROM cron.job AS j
    WHERE j.jobname LIKE 'pgalert\_rule\_%'
      AND j.database = current_database()
      AND NOT EXISTS (SELECT FROM public.monitoring_schedules AS s WHERE s.job_name = j.jobname);
    IF current_setting('cron.use_background_workers', TRUE) = 'on'
       AND EXISTS (SELECT FROM public.monitoring_schedules AS s WHERE s.rule_name IS NOT NULL) THEN
        RAISE WARNING 'pg_cron runs jobs in background workers here, which never arm statement_timeout: '
                      'sql rules run in their own jobs, but their query_timeout is not enforced'
            USING HINT = 'set cron.use_background_workers = off (libpq mode) and let cron.host reach this server';
    END IF;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION monitoring_install_schedules() IS
'Create or update a pg_cron job for every row of monitoring_schedules, and remove the jobs of sql rules that no
longer have a row; returns how many jobs it scheduled. Without pg_cron in this database it schedules nothing,
says so in a NOTICE, and returns 0.';
REVOKE ALL ON FUNCTION monitoring_install_schedules() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_install_schedules() TO monitoring_admin;
