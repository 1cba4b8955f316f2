-- pgalert 0006: a SQL rule runs in its own pg_cron job under its own statement timeout.
--
-- Why a job per SQL rule: PostgreSQL arms statement_timeout when a client's statement starts, never inside a
-- function, so one evaluation of every rule cannot give each SQL rule its own limit. A pg_cron job in libpq
-- mode (pg_cron's default, cron.use_background_workers = off) is a client session: its command
-- 'SET statement_timeout = ...; SELECT monitoring_evaluate_sql_rule(...)' arms the timer for that one rule, the
-- evaluation catches the cancel, records it on the rule and raises rule_evaluation_error. A stalled rule holds
-- up only its own job. In background-worker mode pg_cron never arms the timer: the jobs still keep rules apart,
-- and installing them says, in a WARNING, that the timeouts are not enforced.

ALTER TABLE monitoring_alert_rules
ADD COLUMN query_timeout interval NOT NULL DEFAULT '5 seconds'
CONSTRAINT query_timeout_is_sensible CHECK (query_timeout >= '10 milliseconds' AND query_timeout <= '10 minutes');
COMMENT ON COLUMN monitoring_alert_rules.query_timeout IS
'sql rules: how long the query may run in its pg_cron job before it is canceled and recorded as an error.';

ALTER TABLE monitoring_schedules DROP CONSTRAINT command_is_one_select;
ALTER TABLE monitoring_schedules ADD CONSTRAINT command_is_one_call
CHECK (command ~ '^(SET statement_timeout = ''[0-9]+ms''; )?SELECT [a-z_]+\(.*\)$');
ALTER TABLE monitoring_schedules
ADD COLUMN rule_name text UNIQUE REFERENCES monitoring_alert_rules (rule_name) ON UPDATE CASCADE ON DELETE CASCADE;
COMMENT ON COLUMN monitoring_schedules.rule_name IS
'Set on the job of a sql rule; kept by pgalert as the rule is written, so edit the rule, not this row.';

------------------------------------------------------------------------------------------------------------
-- One rule, its errors kept to itself
------------------------------------------------------------------------------------------------------------
CREATE FUNCTION _monitoring_evaluate_rule_isolated(p_rule monitoring_alert_rules, p_at timestamptz)
RETURNS TABLE (group_key jsonb, observed double precision, fired boolean, alert_id bigint, error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_row record;
    v_any boolean := FALSE;
    v_max double precision;
    v_error text;
BEGIN
    BEGIN
        FOR v_row IN SELECT * FROM public._monitoring_evaluate_rule(p_rule, p_at) LOOP
            group_key := v_row.group_key; observed := v_row.observed; fired := v_row.fired;
            alert_id := v_row.alert_id; error := NULL;
            v_any := TRUE;
            v_max := greatest(v_max, v_row.observed);
            RETURN NEXT;
        END LOOP;
        UPDATE public.monitoring_alert_rules AS r
        SET last_evaluated_at = p_at, last_error = NULL, last_error_at = NULL, last_observed = v_max
        WHERE r.id = p_rule.id;
        IF p_rule.last_error IS NOT NULL THEN
            PERFORM public.monitoring_resolve_alert(a.id, 'pgalert', 'the rule evaluates again', FALSE, p_at)
            FROM public.monitoring_alerts AS a
            WHERE a.dedup_key = 'rule_evaluation_error:' || p_rule.rule_name AND a.status <> 'resolved';
        END IF;
        IF NOT v_any THEN
            group_key := NULL; observed := NULL; fired := FALSE; alert_id := NULL; error := NULL;
            RETURN NEXT;
        END IF;
        RETURN;
    EXCEPTION
        WHEN query_canceled THEN
            RESET ROLE;
            -- a sql rule's own statement_timeout; any other cancel belongs to the caller
            IF p_rule.rule_type <> 'sql' THEN
                RAISE;
            END IF;
            v_error := format('query canceled after running longer than its query_timeout (%s)', p_rule.query_timeout);
        WHEN OTHERS THEN
            RESET ROLE;
            v_error := SQLERRM;
    END;
    UPDATE public.monitoring_alert_rules AS r
    SET last_evaluated_at = p_at, last_error = v_error, last_error_at = p_at
    WHERE r.id = p_rule.id;
    alert_id := public.monitoring_raise_alert(
        'rule_evaluation_error', 'warning', left('Rule ' || p_rule.rule_name || ' failed: ' || v_error, 500),
        'The rule was skipped; the other rules still ran. Fix it in monitoring_alert_rules.',
        p_rule.rule_name, 'rule_evaluation_error:' || p_rule.rule_name,
        jsonb_build_object('rule', p_rule.rule_name, 'error', v_error), p_at, p_at
    );
    group_key := NULL; observed := NULL; fired := FALSE; error := v_error;
    RETURN NEXT;
END
$$;

DROP FUNCTION monitoring_evaluate_alert_rules(timestamptz);
CREATE FUNCTION monitoring_evaluate_alert_rules(p_at timestamptz DEFAULT now(), p_sql_rules boolean DEFAULT TRUE)
RETURNS TABLE (
    rule_name text,
    group_key jsonb,
    observed double precision,
    threshold double precision,
    fired boolean,
    alert_id bigint,
    error text
)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rule public.monitoring_alert_rules;
BEGIN
    FOR v_rule IN
        SELECT * FROM public.monitoring_alert_rules AS r
        WHERE r.enabled
          AND (p_sql_rules OR r.rule_type <> 'sql')
          -- a second of slack: pg_cron starts a little after the minute
          AND (r.last_evaluated_at IS NULL OR r.last_evaluated_at + r.evaluate_every <= p_at + interval '1 second')
        ORDER BY r.rule_name
        FOR UPDATE SKIP LOCKED  -- two evaluations at once share the rules instead of doubling them
    LOOP
        RETURN QUERY
        SELECT v_rule.rule_name, i.group_key, i.observed, v_rule.threshold, i.fired, i.alert_id, i.error
        FROM public._monitoring_evaluate_rule_isolated(v_rule, p_at) AS i;
    END LOOP;
END
$$;
COMMENT ON FUNCTION monitoring_evaluate_alert_rules(timestamptz, boolean) IS
'Evaluate every enabled rule that is due (evaluate_every since its last run) at p_at: fire one alert per rule
and group whose condition holds (deduplicated: one open alert per rule and group), resolve alerts whose
condition has been clear for clear_after. One row per rule and group: observed value, threshold, whether it
fired now, the alert id, and the error if the rule failed (it then raises rule_evaluation_error and the other
rules still run). pg_cron runs it every minute with p_sql_rules => FALSE, because each sql rule has its own job
(monitoring_evaluate_sql_rule); called by hand it runs sql rules too, under the session''s statement_timeout.';

CREATE FUNCTION monitoring_evaluate_sql_rule(p_rule_name text, p_at timestamptz DEFAULT now())
RETURNS TABLE (
    rule_name text,
    group_key jsonb,
    observed double precision,
    fired boolean,
    alert_id bigint,
    error text
)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rule public.monitoring_alert_rules;
BEGIN
    SELECT * INTO v_rule FROM public.monitoring_alert_rules AS r WHERE r.rule_name = p_rule_name;
    IF NOT FOUND OR v_rule.rule_type <> 'sql' THEN
        RAISE EXCEPTION 'no sql rule named %', coalesce(quote_literal(p_rule_name), 'NULL')
            USING ERRCODE = 'no_data_found', HINT = 'SELECT rule_name FROM monitoring_alert_rules WHERE rule_type = ''sql''';
    END IF;
    SELECT * INTO v_rule FROM public.monitoring_alert_rules AS r
    WHERE r.id = v_rule.id AND r.enabled
      AND (r.last_evaluated_at IS NULL OR r.last_evaluated_at + r.evaluate_every <= p_at + interval '1 second')
    FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;  -- disabled, not due, or being evaluated right now
    END IF;
    RETURN QUERY
    SELECT v_rule.rule_name, i.group_key, i.observed, i.fired, i.alert_id, i.error
    FROM public._monitoring_evaluate_rule_isolated(v_rule, p_at) AS i;
END
$$;
COMMENT ON FUNCTION monitoring_evaluate_sql_rule(text, timestamptz) IS
'Evaluate one sql rule if it is enabled and due, as its pg_cron job does after SET statement_timeout (the
rule''s query_timeout): a query canceled by the timeout is recorded on the rule and raised as
rule_evaluation_error, like any other failure. Rows as monitoring_evaluate_alert_rules.';

------------------------------------------------------------------------------------------------------------
-- The job of each sql rule, kept in monitoring_schedules as the rule is written
------------------------------------------------------------------------------------------------------------
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

CREATE FUNCTION _monitoring_sync_sql_rule_job()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- rule authors need no rights on pg_cron: they can only cause this fixed command
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF (TG_OP = 'INSERT' OR OLD.rule_type <> 'sql') AND (TG_OP = 'DELETE' OR NEW.rule_type <> 'sql') THEN
        RETURN NULL;  -- only sql rules have jobs
    END IF;
    IF TG_OP = 'DELETE' THEN
        DELETE FROM public.monitoring_schedules AS s WHERE s.rule_name = OLD.rule_name;
    ELSIF TG_OP = 'UPDATE' THEN
        -- a rename has already cascaded to the row, so it may carry either name
        DELETE FROM public.monitoring_schedules AS s WHERE s.rule_name IN (OLD.rule_name, NEW.rule_name);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.rule_type = 'sql' AND NEW.enabled THEN
        INSERT INTO public.monitoring_schedules (job_name, schedule, command, description, rule_name)
        VALUES (
            'pgalert_rule_' || NEW.rule_name, '* * * * *',
            format('SET statement_timeout = ''%sms''; SELECT monitoring_evaluate_sql_rule(%L)',
                   round(extract(epoch FROM NEW.query_timeout) * 1000)::bigint, NEW.rule_name),
            format('Every minute: the sql rule %s, due every %s, canceled after %s.',
                   NEW.rule_name, NEW.evaluate_every, NEW.query_timeout),
            NEW.rule_name
        );
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        PERFORM public.monitoring_install_schedules();
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER monitoring_alert_rules_sql_job
AFTER INSERT OR DELETE OR UPDATE OF rule_name, rule_type, enabled, query_timeout, evaluate_every
ON monitoring_alert_rules
FOR EACH ROW EXECUTE FUNCTION _monitoring_sync_sql_rule_job();

UPDATE monitoring_schedules
SET
    command = 'SELECT monitoring_evaluate_alert_rules(p_sql_rules => FALSE)',
    description = 'Every minute: evaluate the due rules, fire and resolve their alerts (each sql rule has its own job).'
WHERE job_name = 'pgalert_evaluate_rules';
-- sql rules written before this migration get their jobs
UPDATE monitoring_alert_rules SET query_timeout = query_timeout
WHERE rule_type = 'sql';
SELECT monitoring_install_schedules();

------------------------------------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------------------------------------
REVOKE EXECUTE ON FUNCTION monitoring_evaluate_alert_rules(timestamptz, boolean),
monitoring_evaluate_sql_rule(text, timestamptz), _monitoring_evaluate_rule_isolated(monitoring_alert_rules, timestamptz),
_monitoring_sync_sql_rule_job() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_evaluate_alert_rules(timestamptz, boolean),
monitoring_evaluate_sql_rule(text, timestamptz) TO monitoring_admin;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0006', 'rule_isolation');
