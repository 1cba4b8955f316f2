-- Rules: validation when saved, evaluation (every minute by pg_cron, and by hand), backtests.
--
-- Every rule type fires in monitoring_evaluate_alert_rules(), and alerts resolve themselves once their
-- condition has been clear for clear_after. A sql rule runs in its own pg_cron job under its own statement
-- timeout: PostgreSQL arms statement_timeout when a client's statement starts, never inside a function, so
-- one evaluation of every rule cannot give each sql rule its own limit. A pg_cron job in libpq mode (pg_cron's
-- default, cron.use_background_workers = off) is a client session: its command
-- 'SET statement_timeout = ...; SELECT monitoring_evaluate_sql_rule(...)' arms the timer for that one rule,
-- and the evaluation catches the cancel, records it on the rule and raises rule_evaluation_error. In
-- background-worker mode pg_cron never arms the timer: the jobs still keep rules apart, and installing them
-- says, in a WARNING, that the timeouts are not enforced.
--
-- Owns: monitoring_alert_rules, _monitoring_rule_state

-- A sql rule's query is untrusted code, and it runs only through the two functions below. They are SECURITY
-- DEFINER and owned by monitoring_rule_runner (NOLOGIN, NOINHERIT, no other rights than reading
-- monitoring_events and monitoring_alerts), so PostgreSQL runs the query as that role, and inside a
-- security-definer function it refuses SET ROLE, RESET ROLE and SET SESSION AUTHORIZATION in every form
-- (set_config included, and in whatever the query calls): nothing can climb back to the rights of the session
-- that runs the rule, a pg_cron job owner's superuser included. Callers need no membership in the role.
--
-- Being their owner, monitoring_rule_runner could change them (SECURITY INVOKER, a new body, DROP, GRANT), and a
-- query can call a function any login made in its own session (pg_temp), which then runs as the owner: a reader
-- turned the sandbox into one that ran an admin's next rule as pg_cron's superuser. So the query runs in a
-- read-only subtransaction that is always rolled back: PostgreSQL refuses every CREATE, ALTER, DROP, GRANT and
-- write in it (and refuses to make it writable again inside a subtransaction), and whatever the query set
-- (search_path, any setting) is undone with it. Only its rows come out, copied before the rollback.

-- Where the migrating role is not a superuser (managed PostgreSQL), PostgreSQL lets it hand a function to
-- monitoring_rule_runner only as a member of that role; a superuser needs no membership, so none is made.
DO $membership$
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user)
       AND NOT pg_catalog.pg_has_role(current_user, 'monitoring_rule_runner', 'MEMBER') THEN
        EXECUTE format('GRANT monitoring_rule_runner TO %I', current_user);
    END IF;
END
$membership$;

CREATE OR REPLACE FUNCTION _monitoring_rule_query_plan(p_query text)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_plan jsonb;
    v_planned boolean := FALSE;  -- a variable outlives the rollback; a query raising our SQLSTATE cannot fake it
BEGIN
    BEGIN
        PERFORM set_config('transaction_read_only', 'on', TRUE);
        -- rule authors write plain names; the pinned path comes back with the rollback
        PERFORM set_config('search_path', 'public, pg_temp', TRUE);
        EXECUTE format('EXPLAIN (FORMAT JSON) SELECT * FROM (%s) AS rule_rows', p_query) INTO v_plan;
        v_planned := TRUE;
        RAISE EXCEPTION USING ERRCODE = 'PGRLB', MESSAGE = 'the rule sandbox rolls back';
    EXCEPTION WHEN SQLSTATE 'PGRLB' THEN
        IF NOT v_planned THEN
            RAISE;
        END IF;
    END;
    RETURN v_plan;
END
$$;
COMMENT ON FUNCTION _monitoring_rule_query_plan(text) IS
'Internal: the plan of a sql rule''s query, planned as monitoring_rule_runner (validation when a rule is saved).';
REVOKE ALL ON FUNCTION _monitoring_rule_query_plan(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_rule_query_plan(text) TO monitoring_admin;

CREATE OR REPLACE FUNCTION _monitoring_rule_query_rows(p_query text, p_at timestamptz)
RETURNS TABLE (group_key jsonb, observed double precision, condition boolean, first_at timestamptz, message text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_keys jsonb[];
    v_values double precision[];
    v_firsts timestamptz[];
    v_messages text[];
    v_ran boolean := FALSE;
BEGIN
    BEGIN
        PERFORM set_config('transaction_read_only', 'on', TRUE);
        PERFORM set_config('search_path', 'public, pg_temp', TRUE);
        EXECUTE format(
            'SELECT array_agg(k), array_agg(v), array_agg(f), array_agg(m) '
            'FROM (SELECT coalesce(to_jsonb(r) -> ''group_key'', ''{}''::jsonb) AS k, '
            '             (to_jsonb(r) ->> ''value'')::double precision AS v, '
            '             coalesce((to_jsonb(r) ->> ''occurred_at'')::timestamptz, $1) AS f, '
            '             to_jsonb(r) ->> ''message'' AS m '
            '      FROM (%s) AS r) AS rule_rows', p_query)
        INTO v_keys, v_values, v_firsts, v_messages
        USING p_at;
        v_ran := TRUE;
        RAISE EXCEPTION USING ERRCODE = 'PGRLB', MESSAGE = 'the rule sandbox rolls back';
    EXCEPTION WHEN SQLSTATE 'PGRLB' THEN
        IF NOT v_ran THEN
            RAISE;
        END IF;
    END;
    RETURN QUERY SELECT u.k, u.v, TRUE, u.f, u.m FROM unnest(v_keys, v_values, v_firsts, v_messages) AS u(k, v, f, m);
END
$$;
-- Handing the functions over: a non-superuser may give an object only to a role that can create in its schema,
-- so monitoring_rule_runner holds CREATE for these two statements and never after (a superuser needs neither).
GRANT CREATE ON SCHEMA public TO monitoring_rule_runner;
ALTER FUNCTION _monitoring_rule_query_plan(text) OWNER TO monitoring_rule_runner;
ALTER FUNCTION _monitoring_rule_query_rows(text, timestamptz) OWNER TO monitoring_rule_runner;
REVOKE CREATE ON SCHEMA public FROM monitoring_rule_runner;
COMMENT ON FUNCTION _monitoring_rule_query_rows(text, timestamptz) IS
'Internal: the rows of a sql rule''s query, run as monitoring_rule_runner (evaluation and backtests).';
REVOKE ALL ON FUNCTION _monitoring_rule_query_rows(text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_rule_query_rows(text, timestamptz) TO monitoring_admin, monitoring_reader;

-- A clear message for every way a rule can be wrong, before it is saved.
CREATE OR REPLACE FUNCTION _monitoring_validate_rule()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_plan jsonb;
    v_max_cost double precision;
BEGIN
    NEW.severity := public._monitoring_normalize_severity(NEW.severity);
    IF NEW.rule_type <> 'sql' AND (NEW.event_type IS NULL OR btrim(NEW.event_type) = '') THEN
        RAISE EXCEPTION 'rule %: a % rule needs event_type', NEW.rule_name, NEW.rule_type USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.rule_type IN ('count', 'aggregate', 'spike', 'absence') AND NEW.threshold IS NULL THEN
        RAISE EXCEPTION 'rule %: a % rule needs a threshold', NEW.rule_name, NEW.rule_type
            USING ERRCODE = 'check_violation',
                  HINT = CASE NEW.rule_type
                      WHEN 'spike' THEN 'the percent increase over the previous window, e.g. 300'
                      WHEN 'absence' THEN 'the fewest events expected in the window, e.g. 1'
                      ELSE 'the value to compare with' END;
    END IF;
    IF NEW.rule_type = 'aggregate' AND NEW.aggregate IS NULL THEN
        RAISE EXCEPTION 'rule %: an aggregate rule needs aggregate', NEW.rule_name
            USING ERRCODE = 'check_violation', HINT = 'one of avg, min, max, sum, last, p50, p95, p99';
    END IF;
    IF NEW.rule_type <> 'aggregate' AND NEW.aggregate IS NOT NULL THEN
        RAISE EXCEPTION 'rule %: aggregate applies to aggregate rules only', NEW.rule_name USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.rule_type = 'spike' AND NEW.threshold <= 0 THEN
        RAISE EXCEPTION 'rule %: a spike threshold is a percent increase and must be positive', NEW.rule_name
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.rule_type = 'absence' AND NEW.threshold < 1 THEN
        RAISE EXCEPTION 'rule %: an absence rule fires on fewer than threshold events; threshold must be at least 1',
            NEW.rule_name USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT FROM unnest(NEW.group_by) AS k WHERE k IS NULL OR btrim(k) = '') THEN
        RAISE EXCEPTION 'rule %: group_by holds label names, and one is empty', NEW.rule_name USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.rule_type = 'sql' THEN
        IF NEW.query IS NULL OR btrim(NEW.query) = '' THEN
            RAISE EXCEPTION 'rule %: a sql rule needs query', NEW.rule_name USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.query ~ ';\s*\S' THEN
            RAISE EXCEPTION 'rule %: query must be one SELECT statement', NEW.rule_name USING ERRCODE = 'check_violation';
        END IF;
        NEW.query := regexp_replace(NEW.query, ';\s*$', '');
        v_max_cost := (SELECT s.value::double precision FROM public.monitoring_settings AS s WHERE s.setting = 'sql_rule_max_cost');
        BEGIN
            v_plan := public._monitoring_rule_query_plan(NEW.query);
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'rule %: query does not run as monitoring_rule_runner: %', NEW.rule_name, SQLERRM
                USING ERRCODE = 'invalid_parameter_value';
        END;
        IF (v_plan -> 0 -> 'Plan' ->> 'Total Cost')::double precision > v_max_cost THEN
            RAISE EXCEPTION 'rule %: query is planned to cost %, over the limit of % (setting sql_rule_max_cost)',
                NEW.rule_name, v_plan -> 0 -> 'Plan' ->> 'Total Cost', v_max_cost
                USING ERRCODE = 'invalid_parameter_value', HINT = 'narrow it with an indexed time range';
        END IF;
    ELSIF NEW.query IS NOT NULL THEN
        RAISE EXCEPTION 'rule %: query applies to sql rules only', NEW.rule_name USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_validate_rule() FROM PUBLIC;

CREATE OR REPLACE TRIGGER monitoring_alert_rules_validate
BEFORE INSERT OR UPDATE ON monitoring_alert_rules
FOR EACH ROW EXECUTE FUNCTION _monitoring_validate_rule();
COMMENT ON TRIGGER monitoring_alert_rules_validate ON monitoring_alert_rules IS
'A rule that cannot be evaluated is refused when saved, with the reason.';

-- What a rule sees at one moment: per group, the observed value, whether its condition holds, and when the
-- evidence began. Read-only: evaluation and backtests share it.
CREATE OR REPLACE FUNCTION _monitoring_rule_observations(p_rule monitoring_alert_rules, p_at timestamptz)
RETURNS TABLE (group_key jsonb, observed double precision, condition boolean, first_at timestamptz, message text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_group text := CASE
        WHEN cardinality(p_rule.group_by) = 0 THEN '''{}''::jsonb'
        ELSE 'jsonb_build_object(' || (
            SELECT string_agg(format('%L, e.labels -> %L', k, k), ', ') FROM unnest(p_rule.group_by) AS k
        ) || ')'
    END;
    v_from timestamptz := p_at - p_rule.window_size;
    v_compare text := format('%%s %s %L::double precision', p_rule.comparison, p_rule.threshold);
    v_value text;
BEGIN
    IF p_rule.rule_type = 'count' THEN
        -- first_at: the event that made the count reach the threshold, found by an index-ordered probe and
        -- only for groups over it (sorting every event of a busy window would cost more than the insert)
        RETURN QUERY EXECUTE format(
            'SELECT w.g, w.n::double precision, %s, '
            '       CASE WHEN %s THEN (SELECT e.occurred_at FROM public.monitoring_events AS e '
            '                         WHERE e.event_type = $1 AND e.occurred_at > $2 AND e.occurred_at <= $3 AND %s = w.g '
            '                         ORDER BY e.occurred_at OFFSET greatest(ceil(%L::double precision)::int - 1, 0) LIMIT 1) '
            '       END, NULL::text '
            'FROM (SELECT %s AS g, count(*) AS n '
            '      FROM public.monitoring_events AS e '
            '      WHERE e.event_type = $1 AND e.occurred_at > $2 AND e.occurred_at <= $3 GROUP BY 1) AS w',
            format(v_compare, 'w.n'), format(v_compare, 'w.n'), v_group, p_rule.threshold, v_group)
        USING p_rule.event_type, v_from, p_at;
    ELSIF p_rule.rule_type = 'aggregate' THEN
        v_value := CASE p_rule.aggregate
            WHEN 'avg' THEN 'avg(e.value)' WHEN 'min' THEN 'min(e.value)' WHEN 'max' THEN 'max(e.value)'
            WHEN 'sum' THEN 'sum(e.value)'
            WHEN 'last' THEN '(array_agg(e.value ORDER BY e.occurred_at DESC))[1]'
            WHEN 'p50' THEN 'percentile_cont(0.5) WITHIN GROUP (ORDER BY e.value)'
            WHEN 'p95' THEN 'percentile_cont(0.95) WITHIN GROUP (ORDER BY e.value)'
            WHEN 'p99' THEN 'percentile_cont(0.99) WITHIN GROUP (ORDER BY e.value)'
        END;
        RETURN QUERY EXECUTE format(
            'SELECT g, v, n >= %s AND %s, first_at, format(''%s of %%s samples'', n) '
            'FROM (SELECT %s AS g, %s AS v, count(*) AS n, min(e.occurred_at) AS first_at '
            '      FROM public.monitoring_events AS e '
            '      WHERE e.event_type = $1 AND e.occurred_at > $2 AND e.occurred_at <= $3 AND e.value IS NOT NULL '
            -- stored before value_is_a_finite_number (0012): ignored, as new ones are refused
            '        AND e.value NOT IN (''NaN'', ''Infinity'', ''-Infinity'') '
            '      GROUP BY 1) AS w',
            p_rule.min_samples, format(v_compare, 'v'), p_rule.aggregate, v_group, v_value)
        USING p_rule.event_type, v_from, p_at;
    ELSIF p_rule.rule_type = 'spike' THEN
        RETURN QUERY EXECUTE format(
            'SELECT g, CASE WHEN base > 0 THEN (cur::double precision / base - 1) * 100 END, '
            '       $4 AND base >= %s AND cur >= %s AND cur >= base * (1 + %L::double precision / 100), first_at, '
            '       format(''%%s events against %%s in the previous window'', cur, base) '
            'FROM (SELECT %s AS g, count(*) FILTER (WHERE e.occurred_at > $2) AS cur, '
            '             count(*) FILTER (WHERE e.occurred_at <= $2) AS base, '
            '             min(e.occurred_at) FILTER (WHERE e.occurred_at > $2) AS first_at '
            '      FROM public.monitoring_events AS e '
            '      WHERE e.event_type = $1 AND e.occurred_at > $2 - ($3 - $2) AND e.occurred_at <= $3 '
            '      GROUP BY 1) AS w',
            p_rule.baseline_min, p_rule.min_samples, p_rule.threshold, v_group)
        USING p_rule.event_type, v_from, p_at,
              -- a full baseline exists when events of this type were being recorded before the previous window
              -- began: judged by the data, so a new rule over an old stream speaks at once
              EXISTS (SELECT FROM public.monitoring_events AS e
                      WHERE e.event_type = p_rule.event_type AND e.occurred_at <= p_at - 2 * p_rule.window_size);
    ELSIF p_rule.rule_type = 'absence' THEN
        -- groups are those seen in this window or the one before, so a host that fell silent stays known
        RETURN QUERY EXECUTE format(
            'SELECT g, cur::double precision, cur < %L::double precision, '
            '       coalesce(last_seen, $2), format(''%%s events in the window'', cur) '
            'FROM (SELECT %s AS g, count(*) FILTER (WHERE e.occurred_at > $2) AS cur, max(e.occurred_at) AS last_seen '
            '      FROM public.monitoring_events AS e '
            '      WHERE e.event_type = $1 AND e.occurred_at > $2 - ($3 - $2) AND e.occurred_at <= $3 '
            '      GROUP BY 1 '
            '      UNION ALL SELECT ''{}''::jsonb, 0, NULL WHERE %L AND NOT EXISTS ('
            '          SELECT FROM public.monitoring_events AS e '
            '          WHERE e.event_type = $1 AND e.occurred_at > $2 AND e.occurred_at <= $3)) AS w',
            p_rule.threshold, v_group, cardinality(p_rule.group_by) = 0)
        USING p_rule.event_type, v_from, p_at;
    ELSE
        RETURN QUERY SELECT * FROM public._monitoring_rule_query_rows(p_rule.query, p_at);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_rule_observations(monitoring_alert_rules, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_rule_observations(monitoring_alert_rules, timestamptz) TO monitoring_reader, monitoring_admin;

CREATE OR REPLACE FUNCTION _monitoring_rule_alert_text(p_rule monitoring_alert_rules, p_observed double precision)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE p_rule.rule_type
        WHEN 'count' THEN format('%s: %s %s events in %s (threshold %s %s)', p_rule.rule_name, p_observed,
                                 p_rule.event_type, p_rule.window_size, p_rule.comparison, p_rule.threshold)
        WHEN 'aggregate' THEN format('%s: %s of %s is %s over %s (threshold %s %s)', p_rule.rule_name,
                                     p_rule.aggregate, p_rule.event_type, round(p_observed::numeric, 2),
                                     p_rule.window_size, p_rule.comparison, p_rule.threshold)
        WHEN 'spike' THEN format('%s: %s up %s%% on the previous %s (threshold %s%%)', p_rule.rule_name,
                                 p_rule.event_type, round(p_observed::numeric), p_rule.window_size, p_rule.threshold)
        WHEN 'absence' THEN format('%s: only %s %s events in %s (expected at least %s)', p_rule.rule_name,
                                   coalesce(p_observed, 0), p_rule.event_type, p_rule.window_size, p_rule.threshold)
        ELSE p_rule.rule_name
    END
$$;
REVOKE ALL ON FUNCTION _monitoring_rule_alert_text(monitoring_alert_rules, double precision) FROM PUBLIC;

-- Evaluate one rule: fire for groups whose condition holds, and (unless p_fire_only) resolve alerts whose
-- condition has been clear for clear_after.
CREATE OR REPLACE FUNCTION _monitoring_evaluate_rule(p_rule monitoring_alert_rules, p_at timestamptz, p_fire_only boolean DEFAULT FALSE)
RETURNS TABLE (group_key jsonb, observed double precision, fired boolean, alert_id bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_obs record;
    v_state public._monitoring_rule_state;
    v_open boolean;
    v_source text;
    v_alert bigint;
    v_true_groups jsonb[] := '{}';
BEGIN
    FOR v_obs IN SELECT * FROM public._monitoring_rule_observations(p_rule, p_at) LOOP
        group_key := v_obs.group_key; observed := v_obs.observed; fired := FALSE; alert_id := NULL;
        IF v_obs.condition THEN
            v_true_groups := v_true_groups || v_obs.group_key;
            SELECT * INTO v_state FROM public._monitoring_rule_state AS s
            WHERE s.rule_id = p_rule.id AND s.group_key = v_obs.group_key FOR UPDATE;
            v_open := FOUND AND EXISTS (
                SELECT FROM public.monitoring_alerts AS a WHERE a.id = v_state.alert_id AND a.status <> 'resolved'
            );
            IF v_open THEN
                alert_id := v_state.alert_id;
                IF v_state.clear_since IS NOT NULL THEN
                    UPDATE public._monitoring_rule_state AS s SET clear_since = NULL
                    WHERE s.rule_id = p_rule.id AND s.group_key = v_obs.group_key;
                END IF;
            ELSE
                v_source := CASE WHEN v_obs.group_key = '{}' THEN '' ELSE v_obs.group_key::text END;
                v_alert := public.monitoring_raise_alert(
                    p_rule.rule_name, p_rule.severity,
                    left(public._monitoring_rule_alert_text(p_rule, v_obs.observed), 500),
                    concat_ws(E'\n', nullif(p_rule.description, ''), v_obs.message,
                              CASE WHEN v_source <> '' THEN 'group: ' || v_source END),
                    v_source,
                    'rule:' || p_rule.rule_name || CASE WHEN v_source <> '' THEN ':' || v_source ELSE '' END,
                    jsonb_strip_nulls(jsonb_build_object(
                        'rule', p_rule.rule_name, 'rule_type', p_rule.rule_type, 'group', v_obs.group_key,
                        'observed', v_obs.observed, 'threshold', p_rule.threshold, 'comparison', p_rule.comparison,
                        'window', p_rule.window_size::text, 'runbook_url', p_rule.runbook_url
                    )),
                    least(v_obs.first_at, p_at), p_at
                );
                INSERT INTO public._monitoring_rule_state AS s (rule_id, group_key, alert_id)
                VALUES (p_rule.id, v_obs.group_key, v_alert)
                ON CONFLICT ON CONSTRAINT _monitoring_rule_state_pkey
                DO UPDATE SET alert_id = excluded.alert_id, clear_since = NULL;
                fired := TRUE; alert_id := v_alert;
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
    IF p_fire_only THEN
        RETURN;
    END IF;
    -- groups that fired before and whose condition does not hold now
    FOR v_state IN
        SELECT s.* FROM public._monitoring_rule_state AS s
        WHERE s.rule_id = p_rule.id AND NOT s.group_key = ANY (v_true_groups)
        FOR UPDATE
    LOOP
        IF v_state.clear_since IS NULL THEN
            UPDATE public._monitoring_rule_state AS s SET clear_since = p_at
            WHERE s.rule_id = v_state.rule_id AND s.group_key = v_state.group_key;
            v_state.clear_since := p_at;
        END IF;
        IF p_at - v_state.clear_since >= p_rule.clear_after THEN
            IF EXISTS (SELECT FROM public.monitoring_alerts AS a WHERE a.id = v_state.alert_id AND a.status <> 'resolved') THEN
                PERFORM public._monitoring_resolve(
                    v_state.alert_id, 'pgalert', format('condition clear for %s', p_at - v_state.clear_since),
                    FALSE, p_at, 'rule'
                );
            END IF;
            DELETE FROM public._monitoring_rule_state AS s
            WHERE s.rule_id = v_state.rule_id AND s.group_key = v_state.group_key;
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_evaluate_rule(monitoring_alert_rules, timestamptz, boolean) FROM PUBLIC;

CREATE OR REPLACE FUNCTION monitoring_evaluate_alert_rules(
    p_at timestamptz DEFAULT now(),
    p_sql_rules boolean DEFAULT TRUE,
    p_force boolean DEFAULT FALSE
)
RETURNS TABLE (
    rule_name text,
    group_key jsonb,
    observed double precision,
    threshold double precision,
    fired boolean,
    alert_id bigint,
    error text,
    skipped text
)
LANGUAGE plpgsql
-- an admin evaluates by hand what pg_cron evaluates: rule state and alerts are written on their behalf (a sql
-- rule's query still runs as monitoring_rule_runner, whose function it cannot leave)
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rule public.monitoring_alert_rules;
    v_locked public.monitoring_alert_rules;
    v_due_at timestamptz;
BEGIN
    FOR v_rule IN
        SELECT * FROM public.monitoring_alert_rules AS r
        WHERE r.enabled AND (p_sql_rules OR r.rule_type <> 'sql')
        ORDER BY r.rule_name
    LOOP
        -- two evaluations at once share the rules instead of doubling them; the row is read again under the
        -- lock, so a rule another session has just evaluated is seen as not due
        SELECT * INTO v_locked FROM public.monitoring_alert_rules AS r WHERE r.id = v_rule.id FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            RETURN QUERY SELECT v_rule.rule_name, NULL::jsonb, NULL::double precision, v_rule.threshold, FALSE,
                NULL::bigint, NULL::text, 'being evaluated by another session right now'::text;
            CONTINUE;
        END IF;
        v_rule := v_locked;
        -- a second of slack: pg_cron starts a little after the minute
        v_due_at := v_rule.last_evaluated_at + v_rule.evaluate_every - interval '1 second';
        IF NOT p_force AND v_due_at > p_at THEN
            -- a person asking "what fires now?" a second time within a minute is told, not shown nothing
            RETURN QUERY SELECT v_rule.rule_name, NULL::jsonb, v_rule.last_observed, v_rule.threshold, FALSE,
                NULL::bigint, v_rule.last_error,
                format('not due until %s (evaluated at %s); p_force => TRUE evaluates it now',
                       v_due_at, v_rule.last_evaluated_at);
            CONTINUE;
        END IF;
        RETURN QUERY
        SELECT v_rule.rule_name, i.group_key, i.observed, v_rule.threshold, i.fired, i.alert_id, i.error, NULL::text
        FROM public._monitoring_evaluate_rule_isolated(v_rule, p_at) AS i;
    END LOOP;
END
$$;
COMMENT ON FUNCTION monitoring_evaluate_alert_rules(timestamptz, boolean, boolean) IS
'Evaluate every enabled rule that is due (evaluate_every since its last run) at p_at, or every enabled rule with
p_force: fire one alert per rule and group whose condition holds (deduplicated: one open alert per rule and
group), resolve alerts whose condition has been clear for clear_after. One row per rule and group: observed
value, threshold, whether it fired now, the alert id, and the error if the rule failed (it then raises
rule_evaluation_error and the other rules still run). A rule not evaluated says why in skipped (not due yet,
with its last observed value; or being evaluated by another session). pg_cron runs it every minute with
p_sql_rules => FALSE, because each sql rule has its own job (monitoring_evaluate_sql_rule); called by hand it
runs sql rules too, under the session''s statement_timeout.';
REVOKE ALL ON FUNCTION monitoring_evaluate_alert_rules(timestamptz, boolean, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_evaluate_alert_rules(timestamptz, boolean, boolean) TO monitoring_admin;

CREATE OR REPLACE FUNCTION monitoring_backtest_rule(p_rule_name text, p_from timestamptz, p_to timestamptz, p_step interval DEFAULT NULL)
RETURNS TABLE (would_fire_at timestamptz, group_key jsonb, observed double precision, cleared_at timestamptz)
LANGUAGE plpgsql  -- not STABLE: a sql rule's query runs through a function that sets its search_path
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rule public.monitoring_alert_rules;
    v_at timestamptz;
    v_obs record;
    v_firing jsonb := '{}';  -- group_key::text -> {"at": ..., "observed": ...}
    v_key text;
BEGIN
    SELECT * INTO v_rule FROM public.monitoring_alert_rules AS r WHERE r.rule_name = p_rule_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'rule % does not exist', coalesce(quote_literal(p_rule_name), 'NULL')
            USING ERRCODE = 'no_data_found';
    END IF;
    IF p_to <= p_from OR date_part('epoch', p_to - p_from) / date_part('epoch', coalesce(p_step, v_rule.evaluate_every)) > 100000 THEN
        RAISE EXCEPTION 'backtest range must be positive and at most 100000 steps' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_at := p_from;
    WHILE v_at <= p_to LOOP
        FOR v_obs IN SELECT * FROM public._monitoring_rule_observations(v_rule, v_at) AS o WHERE o.condition LOOP
            v_key := v_obs.group_key::text;
            IF NOT v_firing ? v_key THEN
                v_firing := v_firing || jsonb_build_object(v_key, jsonb_build_object('at', v_at, 'observed', v_obs.observed));
            END IF;
        END LOOP;
        FOR v_key IN SELECT k FROM jsonb_object_keys(v_firing) AS k LOOP
            IF NOT EXISTS (
                SELECT FROM public._monitoring_rule_observations(v_rule, v_at) AS o
                WHERE o.condition AND o.group_key::text = v_key
            ) THEN
                would_fire_at := (v_firing -> v_key ->> 'at')::timestamptz; group_key := v_key::jsonb;
                observed := (v_firing -> v_key ->> 'observed')::double precision; cleared_at := v_at;
                RETURN NEXT;
                v_firing := v_firing - v_key;
            END IF;
        END LOOP;
        v_at := v_at + coalesce(p_step, v_rule.evaluate_every);
    END LOOP;
    FOR v_key IN SELECT k FROM jsonb_object_keys(v_firing) AS k LOOP
        would_fire_at := (v_firing -> v_key ->> 'at')::timestamptz; group_key := v_key::jsonb;
        observed := (v_firing -> v_key ->> 'observed')::double precision; cleared_at := NULL;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION monitoring_backtest_rule(text, timestamptz, timestamptz, interval) IS
'What a rule would have fired over past events, stepping from p_from to p_to by p_step (default its
evaluate_every): one row per alert it would have opened, when, for which group, the observed value then, and
when its condition cleared (NULL: still true at p_to). Changes nothing, so thresholds can be tuned first.';
REVOKE ALL ON FUNCTION monitoring_backtest_rule(text, timestamptz, timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_backtest_rule(text, timestamptz, timestamptz, interval) TO monitoring_reader, monitoring_admin;

CREATE OR REPLACE FUNCTION _monitoring_evaluate_rule_isolated(p_rule monitoring_alert_rules, p_at timestamptz)
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
            PERFORM public._monitoring_resolve(a.id, 'pgalert', 'the rule evaluates again', FALSE, p_at, 'rule')
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
            -- a sql rule's own statement_timeout; any other cancel belongs to the caller
            IF p_rule.rule_type <> 'sql' THEN
                RAISE;
            END IF;
            v_error := format('query canceled after running longer than its query_timeout (%s)', p_rule.query_timeout);
        WHEN OTHERS THEN
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
REVOKE ALL ON FUNCTION _monitoring_evaluate_rule_isolated(monitoring_alert_rules, timestamptz) FROM PUBLIC;

CREATE OR REPLACE FUNCTION monitoring_evaluate_sql_rule(p_rule_name text, p_at timestamptz DEFAULT now())
RETURNS TABLE (
    rule_name text,
    group_key jsonb,
    observed double precision,
    fired boolean,
    alert_id bigint,
    error text
)
LANGUAGE plpgsql
-- an admin evaluates by hand what pg_cron evaluates: rule state and alerts are written on their behalf (a sql
-- rule's query still runs as monitoring_rule_runner, whose function it cannot leave)
SECURITY DEFINER
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
REVOKE ALL ON FUNCTION monitoring_evaluate_sql_rule(text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_evaluate_sql_rule(text, timestamptz) TO monitoring_admin;

CREATE OR REPLACE FUNCTION _monitoring_sync_sql_rule_job()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- rule authors need no rights on pg_cron: they can only cause this fixed command
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF (TG_OP = 'INSERT' OR OLD.rule_type <> 'sql') AND (TG_OP = 'DELETE' OR NEW.rule_type <> 'sql') THEN
        RETURN NULL;  -- only sql rules have jobs
    END IF;
    PERFORM public._monitoring_replace_rule_job(
        -- a rename has already cascaded to the job's row, so it may carry either name
        CASE TG_OP WHEN 'DELETE' THEN ARRAY[OLD.rule_name] WHEN 'UPDATE' THEN ARRAY[OLD.rule_name, NEW.rule_name]
                   ELSE ARRAY[]::text[] END,
        CASE WHEN TG_OP <> 'DELETE' AND NEW.rule_type = 'sql' AND NEW.enabled THEN jsonb_build_object(
            'job_name', 'pgalert_rule_' || NEW.rule_name,
            'schedule', '* * * * *',
            'command', format('SET statement_timeout = ''%sms''; SELECT monitoring_evaluate_sql_rule(%L)',
                              round(extract(epoch FROM NEW.query_timeout) * 1000)::bigint, NEW.rule_name),
            'description', format('Every minute: the sql rule %s, due every %s, canceled after %s.',
                                  NEW.rule_name, NEW.evaluate_every, NEW.query_timeout),
            'rule_name', NEW.rule_name
        ) END);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_sync_sql_rule_job() FROM PUBLIC;

CREATE OR REPLACE TRIGGER monitoring_alert_rules_sql_job
AFTER INSERT OR DELETE OR UPDATE OF rule_name, rule_type, enabled, query_timeout, evaluate_every
ON monitoring_alert_rules
FOR EACH ROW EXECUTE FUNCTION _monitoring_sync_sql_rule_job();
COMMENT ON TRIGGER monitoring_alert_rules_sql_job ON monitoring_alert_rules IS
'Each enabled sql rule has its own pg_cron job, kept in step with the rule.';

-- Put the rule of that name in or out of force; an unknown name is an error.
CREATE OR REPLACE FUNCTION _monitoring_set_rule_enabled(p_rule_name text, p_enabled boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE public.monitoring_alert_rules SET enabled = p_enabled WHERE rule_name = p_rule_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no rule is named %', coalesce(quote_literal(p_rule_name), 'NULL')
            USING ERRCODE = 'no_data_found';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_set_rule_enabled(text, boolean) FROM PUBLIC;
