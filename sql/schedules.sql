-- Scheduled jobs: the rows of monitoring_schedules, installed into pg_cron where it is.
--
-- pg_cron can live in one database only (cron.database_name). Where it is not installed, the jobs are listed
-- in monitoring_schedules and a NOTICE says so; after installing pg_cron, SELECT monitoring_install_schedules().
--
-- Owns: monitoring_schedules, monitoring_scheduler_heartbeat

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

CREATE OR REPLACE FUNCTION monitoring_scheduler_heartbeat()
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.monitoring_scheduler_heartbeat SET beat_at = now();
$$;
COMMENT ON FUNCTION monitoring_scheduler_heartbeat() IS
'pg_cron runs it every minute (job pgalert_heartbeat): the proof that pgalert''s scheduled jobs run.';
REVOKE ALL ON FUNCTION monitoring_scheduler_heartbeat() FROM PUBLIC;

-- pg_cron 1.4 keeps its jobs in a cache it reloads on an invalidation of cron.job. A migration is one large
-- transaction, whose many catalog changes can overflow the shared invalidation queue; the scheduler then gets
-- a reset that its callback ignores (it listens for cron.job alone), and the jobs the migration scheduled never
-- run until something else touches cron.job (seen on fresh clusters in 7 of 13 tries). Both install paths call
-- this in a small transaction of its own after the migration commits: rescheduling one job sends pg_cron the
-- one invalidation it listens for.
CREATE OR REPLACE FUNCTION monitoring_refresh_scheduler()
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        RETURN FALSE;
    END IF;
    PERFORM cron.schedule(s.job_name, s.schedule, s.command)
    FROM public.monitoring_schedules AS s WHERE s.job_name = 'pgalert_heartbeat';
    RETURN TRUE;
END
$$;
COMMENT ON FUNCTION monitoring_refresh_scheduler() IS
'Make pg_cron reload its jobs (false without pg_cron here). `pgalert migrate` and install.psql call it after
their transaction commits; call it after scheduling jobs in a large transaction of your own.';
REVOKE ALL ON FUNCTION monitoring_refresh_scheduler() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_refresh_scheduler() TO monitoring_admin;

-- After a failover. pg_cron connects to run each job where cron.job says (nodename and nodeport: cron.host and the
-- server's port when the job was scheduled), and starts on a standby once it is promoted. Where the servers of a
-- cluster share a port and cron.host (Patroni's, RDS's and Cloud SQL's way) the jobs run on the new primary as they
-- are; where they differ, they would try the dead server's address for ever. Every dispatcher's scheduler check
-- calls this on the primary: it points pgalert's jobs at this server, which pg_cron reloads at once; false when
-- nothing needed it or the definer may not change cron.job (a managed service's pg_cron), which the stalled
-- alert then reports.
CREATE OR REPLACE FUNCTION _monitoring_point_jobs_here()
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_moved integer;
BEGIN
    IF pg_is_in_recovery() OR NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_cron')
       OR current_setting('cron.use_background_workers', TRUE) = 'on' THEN
        RETURN FALSE;  -- a background worker connects nowhere
    END IF;
    EXECUTE $sql$
        UPDATE cron.job
        SET nodename = coalesce(nullif(current_setting('cron.host', TRUE), ''), 'localhost'),
            nodeport = current_setting('port')::integer
        WHERE jobname LIKE 'pgalert\_%' AND database = current_database()
          AND (nodename, nodeport) IS DISTINCT FROM
              (coalesce(nullif(current_setting('cron.host', TRUE), ''), 'localhost'), current_setting('port')::integer)
    $sql$;
    GET DIAGNOSTICS v_moved = ROW_COUNT;
    IF v_moved > 0 THEN
        RAISE LOG 'pgalert: % pg_cron job(s) pointed at this server (port %) after a failover', v_moved,
            current_setting('port');
    END IF;
    RETURN v_moved > 0;
EXCEPTION WHEN insufficient_privilege THEN
    RETURN FALSE;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_point_jobs_here() FROM PUBLIC;

-- Whether pgalert's scheduled jobs run, judged by the heartbeat: rules, escalations, hold releases, flapping
-- and grouping all depend on them, and pg_cron cannot say that it stopped.
CREATE OR REPLACE FUNCTION monitoring_scheduler_status(p_stale_after interval DEFAULT '3 minutes')
RETURNS TABLE (last_run_at timestamptz, seconds_since_run double precision, running boolean)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    -- least(): a stamp ahead of the clock (a restored backup, 'infinity' set by hand) is "just now", never an
    -- error that would stop every dispatcher asking
    SELECT h.beat_at,
           extract(EPOCH FROM now() - least(coalesce(h.beat_at, h.installed_at), now()))::float8,
           coalesce(h.beat_at, h.installed_at) > now() - p_stale_after
    FROM public.monitoring_scheduler_heartbeat AS h
$$;
COMMENT ON FUNCTION monitoring_scheduler_status(interval) IS
'When pg_cron last ran pgalert''s heartbeat job, how long ago (since install if never), and whether that is
within p_stale_after. Every dispatcher asks it and says on /healthz and in metrics.';
REVOKE ALL ON FUNCTION monitoring_scheduler_status(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_scheduler_status(interval) TO monitoring_reader, monitoring_dispatcher;

-- Raised by the dispatchers, not by pg_cron (which is what stopped): one open alert while the jobs do not run,
-- resolved when they run again. Returns the status it judged.
CREATE OR REPLACE FUNCTION monitoring_check_scheduler(p_stale_after interval DEFAULT '3 minutes')
RETURNS TABLE (last_run_at timestamptz, seconds_since_run double precision, running boolean)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_status record;
    v_open bigint;
BEGIN
    PERFORM public._monitoring_point_jobs_here();
    SELECT * INTO v_status FROM public.monitoring_scheduler_status(p_stale_after);
    SELECT a.id INTO v_open FROM public.monitoring_alerts AS a
    WHERE a.dedup_key = 'pgalert_scheduler_stalled' AND a.status <> 'resolved';
    IF NOT v_status.running AND v_open IS NULL THEN
        PERFORM public.monitoring_raise_alert(
            'pgalert_scheduler_stalled', 'critical', 'pgalert''s scheduled jobs are not running',
            format('pg_cron has not run pgalert''s heartbeat job for %s s: rules, escalations, the release of held '
                   'notifications, flapping and grouping are not running. Check that pg_cron is in '
                   'shared_preload_libraries, that cron.database_name is this database (%s), that this server is '
                   'the primary, and SELECT monitoring_refresh_scheduler().',
                   round(v_status.seconds_since_run), current_database()),
            'pgalert', 'pgalert_scheduler_stalled',
            jsonb_build_object('last_run_at', v_status.last_run_at));
    ELSIF v_status.running AND v_open IS NOT NULL THEN
        PERFORM public._monitoring_resolve(v_open, 'pgalert', 'scheduled jobs run again', FALSE, now(), 'rule');
    END IF;
    RETURN QUERY SELECT v_status.last_run_at, v_status.seconds_since_run, v_status.running;
END
$$;
COMMENT ON FUNCTION monitoring_check_scheduler(interval) IS
'Dispatchers only: monitoring_scheduler_status, and raise the critical alert pgalert_scheduler_stalled while the
jobs do not run (resolved when they run again), so a stopped pg_cron pages without pg_cron. After a failover to
a server on another port or cron.host, it points pgalert''s pg_cron jobs at this server.';
REVOKE ALL ON FUNCTION monitoring_check_scheduler(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_check_scheduler(interval) TO monitoring_dispatcher;

-- A sql rule's own job (sql/rules.sql), replaced: the jobs of p_rule_names go, p_job ({job_name, schedule,
-- command, description, rule_name}, when given) comes, and pg_cron follows where it is installed.
CREATE OR REPLACE FUNCTION _monitoring_replace_rule_job(p_rule_names text[], p_job jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM public.monitoring_schedules AS s WHERE s.rule_name = ANY (p_rule_names);
    IF p_job IS NOT NULL THEN
        INSERT INTO public.monitoring_schedules (job_name, schedule, command, description, rule_name)
        SELECT j.job_name, j.schedule, j.command, j.description, j.rule_name
        FROM jsonb_populate_record(NULL::public.monitoring_schedules, p_job) AS j;
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        PERFORM public.monitoring_install_schedules();
    END IF;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_replace_rule_job(text[], jsonb) FROM PUBLIC;
