-- Scheduled jobs: the rows of monitoring_schedules, installed into pg_cron where it is.
--
-- pg_cron can live in one database only (cron.database_name). Where it is not installed, the jobs are listed
-- in monitoring_schedules and a NOTICE says so; after installing pg_cron, SELECT monitoring_install_schedules().
--
-- Where pg_cron cannot run them (not loaded, not installed here, no rights on its schema, its runs failing),
-- the dispatchers run the same commands at the same minutes (`pgalert dispatch --scheduler auto`, the
-- default): monitoring_scheduler_mode() decides, monitoring_due_scheduled_jobs() lists each job's tick and
-- monitoring_run_scheduled_job() runs it once across any number of dispatchers.
--
-- Owns: monitoring_schedules, monitoring_scheduler_heartbeat, monitoring_scheduler_ticks

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
    IF NOT has_schema_privilege('cron', 'USAGE') THEN
        -- a migrate that cannot schedule still succeeds, and then says how the jobs will run
        -- (monitoring_scheduler_diagnosis)
        RAISE NOTICE '% has no rights on schema cron: % job(s) not scheduled in pg_cron', current_user,
            (SELECT count(*) FROM public.monitoring_schedules)
            USING HINT = 'a superuser runs GRANT USAGE ON SCHEMA cron TO ' || quote_ident(current_user)
                         || ', then SELECT monitoring_install_schedules()';
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
    -- pg_settings: pg_cron's settings are for superusers and pg_read_all_settings, where current_setting fails
    IF (SELECT v.setting FROM pg_catalog.pg_settings AS v WHERE v.name = 'cron.use_background_workers') = 'on'
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
    -- a dispatcher's run says so (monitoring_run_scheduled_job): only pg_cron's own beat proves pg_cron runs
    UPDATE public.monitoring_scheduler_heartbeat
    SET beat_at = now(),
        cron_beat_at = CASE WHEN current_setting('pgalert.scheduler', TRUE) = 'dispatcher' THEN cron_beat_at
                            ELSE now() END;
$$;
COMMENT ON FUNCTION monitoring_scheduler_heartbeat() IS
'pg_cron (or a dispatcher, where pg_cron cannot) runs it every minute (job pgalert_heartbeat): the proof that
pgalert''s scheduled jobs run.';
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

-- Why pg_cron will not run pgalert's jobs in this database, and what a superuser runs to mend it: the first
-- cause found, from the server's processes and catalogs (a non-superuser may read none of pg_cron's
-- settings, so nothing here asks for them). Every answer is also how to go on without pg_cron: the
-- dispatchers run the jobs meanwhile. Read by `pgalert migrate`, the dispatchers (--scheduler auto) and the
-- stalled alert.
CREATE OR REPLACE FUNCTION monitoring_scheduler_diagnosis(p_stale_after interval DEFAULT '2 minutes')
RETURNS TABLE (problem text, superuser_sql text)
LANGUAGE plpgsql STABLE
SECURITY DEFINER  -- cron.job shows each login its own jobs: pgalert's are the owner's
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cron_database name;
    v_preloaded text;
    v_install text;
    v_failure text;
    v_beat timestamptz;
BEGIN
    -- pg_cron's launcher connects to cron.database_name; it runs only where pg_cron is preloaded. Its
    -- backend_type is hidden from a login without pg_read_all_stats; the name it gives itself is not.
    SELECT a.datname INTO v_cron_database FROM pg_catalog.pg_stat_activity AS a
    WHERE a.backend_type = 'pg_cron launcher' OR a.application_name = 'pg_cron scheduler'
    LIMIT 1;
    -- what a superuser runs once pg_cron is loaded here: the extension, rights on it, pgalert's jobs
    v_install := concat_ws(E'\n', 'CREATE EXTENSION IF NOT EXISTS pg_cron;',
                           format('GRANT USAGE ON SCHEMA cron TO %I;', current_user),
                           format('SET ROLE %I;', current_user),
                           'SELECT public.monitoring_install_schedules();',
                           'RESET ROLE;');
    IF v_cron_database IS NULL AND pg_catalog.pg_is_in_recovery() THEN
        RETURN;  -- pg_cron waits for the promote, and so do the jobs: nothing to mend on a standby
    END IF;
    IF v_cron_database IS NULL THEN
        SELECT s.setting INTO v_preloaded FROM pg_catalog.pg_settings AS s WHERE s.name = 'shared_preload_libraries';
        problem := 'pg_cron is not loaded by this server (shared_preload_libraries)';
        superuser_sql := concat_ws(E'\n',
            '-- pg_cron is loaded at server start: add it to what is preloaded now'
            || CASE WHEN v_preloaded IS NULL THEN ' (SHOW shared_preload_libraries)' ELSE '' END,
            format('ALTER SYSTEM SET shared_preload_libraries = %L;',
                   concat_ws(',', nullif(v_preloaded, ''), 'pg_cron')),
            format('ALTER SYSTEM SET cron.database_name = %L;', current_database()),
            format('-- restart PostgreSQL (on a managed service: its parameter group or flags), then in database %I:',
                   current_database()),
            v_install);
    ELSIF v_cron_database <> current_database() THEN
        problem := format('pg_cron runs in database %s, not in %s (cron.database_name)', v_cron_database,
                          current_database());
        superuser_sql := concat_ws(E'\n', format('ALTER SYSTEM SET cron.database_name = %L;', current_database()),
                                   format('-- restart PostgreSQL, then in database %I:', current_database()),
                                   v_install);
    ELSIF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        problem := format('the pg_cron extension is not installed in database %s', current_database());
        superuser_sql := v_install;
    ELSIF NOT pg_catalog.has_schema_privilege('cron', 'USAGE') THEN
        problem := format('%s, who owns pgalert''s jobs, has no rights on schema cron', current_user);
        superuser_sql := v_install;
    ELSE
        SELECT coalesce(h.cron_beat_at, h.installed_at) INTO v_beat FROM public.monitoring_scheduler_heartbeat AS h;
        IF NOT EXISTS (SELECT FROM cron.job AS j WHERE j.jobname = 'pgalert_heartbeat'
                       AND j.database = current_database() AND j.active) THEN
            problem := 'pgalert''s jobs are not scheduled in pg_cron';
            superuser_sql := v_install;
        ELSIF v_beat < now() - p_stale_after THEN
            -- pg_cron keeps the outcome of each run: the heartbeat's last, when it failed, names the cause
            SELECT CASE WHEN d.status = 'failed' THEN d.return_message END INTO v_failure
            FROM cron.job_run_details AS d JOIN cron.job AS j USING (jobid)
            WHERE j.jobname = 'pgalert_heartbeat' AND j.database = current_database()
              AND d.status IN ('failed', 'succeeded')
            -- newest first along runid, job_run_details' only index: pg_cron never empties it, and every
            -- dispatcher in --scheduler auto asks this every few seconds while pg_cron is stale
            ORDER BY d.runid DESC LIMIT 1;
            problem := format('pg_cron has not run pgalert''s heartbeat for %s s%s',
                              round(extract(EPOCH FROM now() - v_beat)),
                              coalesce(': its runs fail: ' || nullif(trim(v_failure), ''), ''));
            superuser_sql := CASE
                WHEN v_failure ILIKE '%connection failed%' OR v_failure ILIKE '%password%' THEN
                    -- libpq mode logs in as the job's owner without a password; a background worker needs none
                    concat_ws(E'\n',
                        '-- pg_cron''s jobs log in to this server without a password: run them in background workers',
                        'ALTER SYSTEM SET cron.use_background_workers = on;',
                        '-- restart PostgreSQL (max_worker_processes must leave room for them)')
                ELSE concat_ws(E'\n', '-- why pg_cron''s runs do not happen or fail:',
                               'SELECT j.jobname, d.status, d.return_message, d.start_time FROM cron.job_run_details '
                               'AS d JOIN cron.job AS j USING (jobid) ORDER BY d.start_time DESC LIMIT 20;') END;
        ELSE
            RETURN;
        END IF;
    END IF;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION monitoring_scheduler_diagnosis(interval) IS
'Why pg_cron will not run pgalert''s scheduled jobs in this database (not loaded, another cron.database_name, the
extension missing, no rights on schema cron, the jobs not scheduled, or its runs stale or failing for
p_stale_after), with the SQL a superuser runs to mend it; no row when pg_cron runs them. While there is a
row, dispatchers started with --scheduler auto run the jobs themselves.';
REVOKE ALL ON FUNCTION monitoring_scheduler_diagnosis(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_scheduler_diagnosis(interval) TO monitoring_reader, monitoring_dispatcher;

-- Who runs the jobs for a dispatcher started with --scheduler p_requested: pg_cron, or the dispatchers.
CREATE OR REPLACE FUNCTION monitoring_scheduler_mode(p_requested text DEFAULT 'auto')
RETURNS TABLE (mode text, reason text)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_requested IS NULL OR p_requested NOT IN ('auto', 'pg_cron', 'dispatcher') THEN
        RAISE EXCEPTION 'unknown scheduler %: auto, pg_cron or dispatcher', p_requested
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT d.problem INTO reason FROM public.monitoring_scheduler_diagnosis() AS d;
    mode := CASE WHEN p_requested <> 'auto' THEN p_requested
                 WHEN reason IS NULL THEN 'pg_cron' ELSE 'dispatcher' END;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION monitoring_scheduler_mode(text) IS
'The scheduler in force for a dispatcher started with --scheduler p_requested (auto, pg_cron or dispatcher):
auto is pg_cron while monitoring_scheduler_diagnosis() finds nothing wrong with it, the dispatchers
otherwise; reason is what it found.';
REVOKE ALL ON FUNCTION monitoring_scheduler_mode(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_scheduler_mode(text) TO monitoring_reader, monitoring_dispatcher;

-- What both install paths say last: how the scheduled jobs will run, and when pg_cron cannot run them, the SQL
-- a superuser runs (here, or in the file p_superuser_script that `pgalert migrate --superuser-script` wrote).
-- A migrate never ends in silence while nothing will run them.
CREATE OR REPLACE FUNCTION monitoring_scheduler_summary(p_superuser_script text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cron record;
    v_jobs bigint := (SELECT count(*) FROM public.monitoring_schedules);
BEGIN
    SELECT * INTO v_cron FROM public.monitoring_scheduler_diagnosis() AS d;
    IF v_cron.problem IS NULL THEN
        RETURN format('Scheduled jobs: pg_cron runs pgalert''s %s jobs in database %s (dispatchers in '
                      '--scheduler auto, the default, take over if it stops).', v_jobs, current_database());
    END IF;
    RETURN format('Scheduled jobs: pg_cron cannot run pgalert''s %s jobs here: %s.', v_jobs, v_cron.problem)
        || E'\n' || 'Until it can, `pgalert dispatch` runs them (--scheduler auto, the default): with no dispatcher '
        || 'running, no rule is evaluated and no escalation moves on.'
        || E'\n' || CASE
            WHEN p_superuser_script IS NOT NULL THEN
                format('To run them under pg_cron, a superuser runs %s in database %s.', p_superuser_script,
                       current_database())
            ELSE format('To run them under pg_cron, a superuser runs, in database %s:', current_database())
                 || E'\n\n' || v_cron.superuser_sql || E'\n' END;
END
$$;
COMMENT ON FUNCTION monitoring_scheduler_summary(text) IS
'How pgalert''s scheduled jobs will run here, in words: under pg_cron, or in the dispatchers because pg_cron
cannot (monitoring_scheduler_diagnosis), with the SQL a superuser runs to mend that, or the name of the file
p_superuser_script that holds it. `pgalert migrate` and install.psql end by printing it.';
REVOKE ALL ON FUNCTION monitoring_scheduler_summary(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_scheduler_summary(text) TO monitoring_reader;

-- Whether a five-field cron schedule matches a minute, as pg_cron reads one: numbers, *, ranges a-b, steps /n
-- and lists, in pg_cron's time zone (GMT unless cron.timezone says otherwise); when both day fields are
-- restricted, either may match. pg_cron's 'N seconds' schedules never match: pgalert's jobs are per minute.
CREATE OR REPLACE FUNCTION _monitoring_cron_field_matches(p_field text, p_value integer, p_low integer, p_high integer)
RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (
        SELECT FROM pg_catalog.unnest(pg_catalog.string_to_array(p_field, ',')) AS part,
            LATERAL (SELECT pg_catalog.regexp_match(part, '^(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?$') AS m) AS parsed,
            LATERAL (SELECT CASE WHEN m[1] = '*' THEN p_low ELSE m[2]::integer END AS low,
                            CASE WHEN m[1] = '*' OR (m[3] IS NULL AND m[4] IS NOT NULL) THEN p_high
                                 ELSE coalesce(m[3], m[2])::integer END AS high) AS bounds
        WHERE m IS NOT NULL AND p_value BETWEEN bounds.low AND bounds.high
          AND (p_value - bounds.low) % greatest(coalesce(m[4]::integer, 1), 1) = 0
    )
$$;

REVOKE ALL ON FUNCTION _monitoring_cron_field_matches(text, integer, integer, integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION _monitoring_cron_matches(p_schedule text, p_at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.array_length(f, 1) = 5
       AND public._monitoring_cron_field_matches(f[1], extract(MINUTE FROM t)::integer, 0, 59)
       AND public._monitoring_cron_field_matches(f[2], extract(HOUR FROM t)::integer, 0, 23)
       AND public._monitoring_cron_field_matches(f[4], extract(MONTH FROM t)::integer, 1, 12)
       AND CASE WHEN f[3] <> '*' AND f[5] <> '*' THEN day_of_month OR day_of_week
                ELSE day_of_month AND day_of_week END
    FROM (SELECT pg_catalog.regexp_split_to_array(pg_catalog.btrim(p_schedule), '\s+') AS f,
                 p_at AT TIME ZONE coalesce((SELECT nullif(v.setting, '') FROM pg_catalog.pg_settings AS v
                                              WHERE v.name = 'cron.timezone'), 'GMT') AS t) AS s,
        LATERAL (SELECT public._monitoring_cron_field_matches(f[3], extract(DAY FROM t)::integer, 1, 31)
                            AS day_of_month,
                        public._monitoring_cron_field_matches(f[5], extract(DOW FROM t)::integer, 0, 7)
                        OR (extract(DOW FROM t) = 0 AND public._monitoring_cron_field_matches(f[5], 7, 0, 7))
                            AS day_of_week) AS days
$$;

REVOKE ALL ON FUNCTION _monitoring_cron_matches(text, timestamptz) FROM PUBLIC;

-- A dispatcher that missed a minute (busy, restarting, handing over) still runs its tick, this long after.
-- Older ticks are not run again: like pg_cron, a job runs at its times, it does not catch up on a backlog.
CREATE OR REPLACE FUNCTION monitoring_due_scheduled_jobs(p_at timestamptz DEFAULT now())
RETURNS TABLE (job_name text, tick timestamptz, timeout_ms bigint)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.job_name, due.tick, substring(s.command FROM '^SET statement_timeout = ''([0-9]+)ms''; ')::bigint
    FROM public.monitoring_schedules AS s
    CROSS JOIN LATERAL (
        SELECT max(m.minute) AS tick
        FROM pg_catalog.generate_series(date_trunc('minute', p_at) - interval '4 minutes', date_trunc('minute', p_at),
                                         interval '1 minute') AS m (minute)
        WHERE public._monitoring_cron_matches(s.schedule, m.minute)
    ) AS due
    LEFT JOIN public.monitoring_scheduler_ticks AS t ON t.job_name = s.job_name
    WHERE due.tick IS NOT NULL AND (t.last_tick IS NULL OR t.last_tick < due.tick)
    ORDER BY due.tick, s.job_name
$$;
COMMENT ON FUNCTION monitoring_due_scheduled_jobs(timestamptz) IS
'The jobs of monitoring_schedules whose latest tick (a minute their schedule matched, within the last five
before p_at) has not run in a dispatcher yet, and the statement_timeout a sql rule''s job runs under (ms, or
NULL). Dispatchers running the scheduler call monitoring_run_scheduled_job for each.';
REVOKE ALL ON FUNCTION monitoring_due_scheduled_jobs(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_due_scheduled_jobs(timestamptz) TO monitoring_dispatcher, monitoring_reader;

-- Exactly once per tick: the advisory lock keeps a second dispatcher from waiting behind a long job (it skips
-- it), and last_tick moves forward only in the transaction that runs the job, so a tick that committed is
-- never run again and one whose dispatcher died is rolled back with its work and runs in the next dispatcher.
-- Run as its owner, as pg_cron runs the jobs: the commands are the owner's (monitoring_schedules is written
-- by admins and by pgalert), the same one-line calls pg_cron makes.
CREATE OR REPLACE FUNCTION monitoring_run_scheduled_job(p_job_name text, p_tick timestamptz, p_dispatcher text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_command text;
    v_error text;
BEGIN
    IF NOT pg_catalog.pg_try_advisory_xact_lock(1886414689, pg_catalog.hashtext(p_job_name)) THEN
        RETURN FALSE;  -- another dispatcher runs it now; if it dies, this tick is still due
    END IF;
    SELECT s.command INTO v_command FROM public.monitoring_schedules AS s WHERE s.job_name = p_job_name;
    IF NOT FOUND OR p_tick > now() THEN
        RETURN FALSE;
    END IF;
    INSERT INTO public.monitoring_scheduler_ticks AS t (job_name, last_tick, ran_at, ran_by)
    VALUES (p_job_name, p_tick, now(), p_dispatcher)
    ON CONFLICT ON CONSTRAINT monitoring_scheduler_ticks_pkey DO UPDATE
    SET last_tick = excluded.last_tick, ran_at = excluded.ran_at, ran_by = excluded.ran_by, last_error = NULL
    WHERE t.last_tick < excluded.last_tick;
    IF NOT FOUND THEN
        RETURN FALSE;  -- this tick, or a later one, already ran
    END IF;
    PERFORM pg_catalog.set_config('pgalert.scheduler', 'dispatcher', TRUE);
    BEGIN
        -- a deferred constraint trigger would fire at the caller's commit, as the dispatcher's login and after
        -- this function could record its failure: here it fires with the job, as the owner, inside this block
        SET CONSTRAINTS ALL IMMEDIATE;
        -- the caller armed a sql rule's statement_timeout (SET LOCAL) before this statement: here it is the call
        EXECUTE regexp_replace(v_command, '^(SET statement_timeout = ''[0-9]+ms''; )?SELECT ', 'SELECT public.');
    EXCEPTION WHEN OTHERS THEN
        -- a job that fails has had its tick, as under pg_cron: its error is kept, its work rolled back
        GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT;
        UPDATE public.monitoring_scheduler_ticks AS t SET last_error = left(v_error, 1000)
        WHERE t.job_name = p_job_name;
    END;
    PERFORM pg_catalog.set_config('pgalert.scheduler', '', TRUE);
    RETURN TRUE;
END
$$;
COMMENT ON FUNCTION monitoring_run_scheduled_job(text, timestamptz, text) IS
'Dispatchers only: run the job p_job_name for its tick p_tick (from monitoring_due_scheduled_jobs), once across
all dispatchers: true when this call ran it, false when another dispatcher runs or ran it. Its work and the
record of its tick (monitoring_scheduler_ticks) commit together, so a dispatcher killed mid-tick leaves the
tick to another.';
REVOKE ALL ON FUNCTION monitoring_run_scheduled_job(text, timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_run_scheduled_job(text, timestamptz, text) TO monitoring_dispatcher;

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
'When pgalert''s heartbeat job last ran (under pg_cron or in a dispatcher), how long ago (since install if never),
and whether that is within p_stale_after. Every dispatcher asks it and says on /healthz and in metrics.';
REVOKE ALL ON FUNCTION monitoring_scheduler_status(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_scheduler_status(interval) TO monitoring_reader, monitoring_dispatcher;

-- What the stalled alert says: the cause it sees, and the command that mends it.
CREATE OR REPLACE FUNCTION _monitoring_scheduler_stall_cause()
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cron record;
    v_failed public.monitoring_scheduler_ticks;
BEGIN
    SELECT * INTO v_failed FROM public.monitoring_scheduler_ticks AS t
    WHERE t.last_error IS NOT NULL AND t.ran_at > now() - interval '10 minutes'
    ORDER BY t.job_name = 'pgalert_heartbeat' DESC, t.ran_at DESC LIMIT 1;
    IF FOUND THEN
        RETURN format('The dispatchers run the jobs (pg_cron does not), and job %s fails: %s. Mend what the error '
                      'names; each job''s last run is in monitoring_scheduler_ticks.', v_failed.job_name,
                      v_failed.last_error);
    END IF;
    SELECT * INTO v_cron FROM public.monitoring_scheduler_diagnosis() AS d;
    IF v_cron.problem IS NOT NULL THEN
        RETURN format('Cause: %s, and no dispatcher runs the jobs in its place. Mend it: run `pgalert dispatch` '
                      'with --scheduler auto (the default), which runs them without pg_cron; or have a superuser '
                      'run, in database %s:', v_cron.problem, current_database()) || E'\n' || v_cron.superuser_sql;
    END IF;
    RETURN format('pg_cron is loaded here and pgalert''s jobs are scheduled, but none ran. Check that this server is '
                  'the primary and SELECT monitoring_refresh_scheduler(); or run `pgalert dispatch --scheduler '
                  'dispatcher`, which runs them without pg_cron.');
END
$$;
REVOKE ALL ON FUNCTION _monitoring_scheduler_stall_cause() FROM PUBLIC;

-- Raised by the dispatchers, not by the scheduler (which is what stopped): one open alert while the jobs do not run,
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
            format('No scheduler has run pgalert''s heartbeat job for %s s: rules, escalations, the release of held '
                   'notifications, flapping and grouping are not running. %s',
                   round(v_status.seconds_since_run), public._monitoring_scheduler_stall_cause()),
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
