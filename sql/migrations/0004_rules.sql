-- pgalert 0004: events, rules that turn them into alerts, and health probes.
--
-- Detection has two paths. pg_cron runs monitoring_evaluate_alert_rules() every minute (its finest grain):
-- every rule type fires there, and alerts resolve themselves once their condition has been clear for
-- clear_after. Count rules also fire from the INSERT itself: a statement trigger on monitoring_events
-- evaluates the count rules of the event types just written, in the writer's transaction, so the alert
-- exists when the event commits. No dispatcher is needed for detection.

CREATE TABLE monitoring_settings (
    setting text PRIMARY KEY,
    value text NOT NULL,
    description text NOT NULL DEFAULT ''
);
COMMENT ON TABLE monitoring_settings IS 'pgalert settings kept in the database; edit value with UPDATE.';
INSERT INTO monitoring_settings (setting, value, description) VALUES
('event_retention', '14 days', 'monitoring_events older than this are dropped, a day partition at a time'),
('sql_rule_max_cost', '1000000', 'plain-SQL rules whose planned cost exceeds this are refused when saved');

------------------------------------------------------------------------------------------------------------
-- Events: time-partitioned by day, with retention
------------------------------------------------------------------------------------------------------------
CREATE TABLE monitoring_events (
    event_type text NOT NULL,
    value double precision,
    labels jsonb NOT NULL DEFAULT '{}',
    occurred_at timestamptz NOT NULL DEFAULT now(),
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT event_type_is_not_blank CHECK (btrim(event_type) <> ''),
    CONSTRAINT labels_are_an_object CHECK (jsonb_typeof(labels) = 'object')
) PARTITION BY RANGE (occurred_at);
-- the window queries rules run: one event type, a time range, and the value for aggregates
CREATE INDEX monitoring_events_type_time ON monitoring_events (event_type, occurred_at) INCLUDE (value);
CREATE TABLE monitoring_events_default PARTITION OF monitoring_events DEFAULT;

COMMENT ON TABLE monitoring_events IS
'What apps and probes record: INSERT (event_type, value, labels[, occurred_at]); multi-row INSERT and COPY
welcome. occurred_at is the event''s own time, so late or imported events count in the right window.
Partitioned by day; partitions older than the event_retention setting are dropped.';
COMMENT ON COLUMN monitoring_events.value IS 'A measurement (ms, percent, ...) or NULL for a plain occurrence.';
COMMENT ON COLUMN monitoring_events.labels IS 'Dimensions such as {"host": "web-2"}; rules can group by them.';

CREATE FUNCTION monitoring_maintain_event_partitions(p_days_ahead integer DEFAULT 3, p_at timestamptz DEFAULT now())
RETURNS TABLE (partition_name text, action text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_day date;
    v_name text;
    v_keep interval := (SELECT s.value::interval FROM public.monitoring_settings AS s WHERE s.setting = 'event_retention');
    v_partition record;
BEGIN
    -- create today's and the next days' partitions, moving any rows the default partition holds for them
    FOR v_day IN
        SELECT d::date
        FROM generate_series(
            date_trunc('day', p_at AT TIME ZONE 'UTC') - interval '1 day',
            date_trunc('day', p_at AT TIME ZONE 'UTC') + make_interval(days => p_days_ahead),
            interval '1 day'
        ) AS d
    LOOP
        v_name := 'monitoring_events_' || to_char(v_day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass('public.' || v_name) IS NOT NULL;
        CREATE TEMP TABLE IF NOT EXISTS _monitoring_moved_events (LIKE public.monitoring_events) ON COMMIT DROP;
        WITH moved AS (
            DELETE FROM public.monitoring_events_default AS e
            WHERE e.occurred_at >= v_day::timestamp AT TIME ZONE 'UTC'
              AND e.occurred_at < (v_day + 1)::timestamp AT TIME ZONE 'UTC'
            RETURNING e.*
        )
        INSERT INTO _monitoring_moved_events SELECT * FROM moved;
        EXECUTE format(
            'CREATE TABLE public.%I PARTITION OF public.monitoring_events FOR VALUES FROM (%L) TO (%L)',
            v_name, v_day::timestamp AT TIME ZONE 'UTC', (v_day + 1)::timestamp AT TIME ZONE 'UTC'
        );
        INSERT INTO public.monitoring_events SELECT * FROM _monitoring_moved_events;
        TRUNCATE _monitoring_moved_events;
        partition_name := v_name; action := 'created'; RETURN NEXT;
    END LOOP;
    -- drop whole days past retention; old rows that landed in the default partition are deleted
    FOR v_partition IN
        SELECT c.relname
        FROM pg_catalog.pg_inherits AS i
        JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'public.monitoring_events'::regclass
          AND c.relname ~ '^monitoring_events_\d{8}$'
          AND to_date(substr(c.relname, 19), 'YYYYMMDD') + 1 <= (p_at - v_keep)::date
    LOOP
        EXECUTE format('DROP TABLE public.%I', v_partition.relname);
        partition_name := v_partition.relname; action := 'dropped'; RETURN NEXT;
    END LOOP;
    DELETE FROM public.monitoring_events_default AS e WHERE e.occurred_at < p_at - v_keep;
END
$$;
COMMENT ON FUNCTION monitoring_maintain_event_partitions(integer, timestamptz) IS
'Create day partitions of monitoring_events from yesterday to p_days_ahead days ahead, and drop those past the
event_retention setting. Run hourly by pg_cron; safe to run any time. Returns what it created or dropped.';

SELECT count(*) FROM monitoring_maintain_event_partitions();

------------------------------------------------------------------------------------------------------------
-- Rules
------------------------------------------------------------------------------------------------------------
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'monitoring_rule_runner') THEN
        BEGIN
            CREATE ROLE monitoring_rule_runner NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$roles$;

CREATE TABLE monitoring_alert_rules (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_name text NOT NULL UNIQUE CONSTRAINT rule_name_is_simple CHECK (rule_name ~ '^[a-z][a-z0-9_]{0,62}$'),
    rule_type text NOT NULL
    CONSTRAINT rule_type_is_known CHECK (rule_type IN ('count', 'aggregate', 'spike', 'absence', 'sql')),
    event_type text,
    window_size interval NOT NULL DEFAULT '5 minutes',
    aggregate text CONSTRAINT aggregate_is_known CHECK (
        aggregate IN ('avg', 'min', 'max', 'sum', 'last', 'p50', 'p95', 'p99')
    ),
    comparison text NOT NULL DEFAULT '>=' CONSTRAINT comparison_is_known CHECK (comparison IN ('>', '>=', '<', '<=')),
    threshold double precision,
    min_samples integer NOT NULL DEFAULT 1 CONSTRAINT min_samples_is_positive CHECK (min_samples >= 1),
    baseline_min integer NOT NULL DEFAULT 5 CONSTRAINT baseline_min_is_positive CHECK (baseline_min >= 1),
    group_by text[] NOT NULL DEFAULT '{}',
    query text,
    severity text NOT NULL,
    clear_after interval NOT NULL DEFAULT '5 minutes',
    evaluate_every interval NOT NULL DEFAULT '1 minute',
    runbook_url text,
    description text NOT NULL DEFAULT '',
    enabled boolean NOT NULL DEFAULT TRUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_evaluated_at timestamptz,
    last_observed double precision,
    last_error text,
    last_error_at timestamptz,
    CONSTRAINT window_is_sensible CHECK (window_size > '0' AND window_size <= '7 days'),
    CONSTRAINT clear_after_is_not_negative CHECK (clear_after >= '0'),
    CONSTRAINT evaluate_every_is_positive CHECK (evaluate_every > '0')
);
COMMENT ON TABLE monitoring_alert_rules IS
'Rules that turn events into alerts, one row each. rule_type:
count: events of event_type in window_size, compared (comparison, default >=) with threshold;
aggregate: avg|min|max|sum|last|p50|p95|p99 of value over window_size compared with threshold, once there are
  min_samples samples;
spike: events in window_size at least threshold percent above the previous window of the same length
  (300 means four times), with at least min_samples now and baseline_min before; silent until a full baseline;
absence: fewer than threshold events in window_size (heartbeats);
sql: query returns the rows that should alert (optional columns group_key, value, message, occurred_at); it
  runs as monitoring_rule_runner, which can read monitoring_events and monitoring_alerts only.
A rule grouped by labels (group_by) fires one alert per group. An alert resolves itself after its condition has
been clear for clear_after. Alerts carry alert_type = rule_name.';
COMMENT ON COLUMN monitoring_alert_rules.last_error IS 'Why the last evaluation failed (cleared when one succeeds).';

CREATE TABLE _monitoring_rule_state (
    rule_id bigint NOT NULL REFERENCES monitoring_alert_rules (id) ON DELETE CASCADE,
    group_key jsonb NOT NULL,
    alert_id bigint REFERENCES monitoring_alerts (id) ON DELETE SET NULL,
    clear_since timestamptz,
    PRIMARY KEY (rule_id, group_key)
);

-- A clear message for every way a rule can be wrong, before it is saved.
CREATE FUNCTION _monitoring_validate_rule()
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
            SET LOCAL ROLE monitoring_rule_runner;
            -- rule authors write plain names; the function's pinned path is restored when it returns
            PERFORM set_config('search_path', 'public', TRUE);
            EXECUTE format('EXPLAIN (FORMAT JSON) SELECT * FROM (%s) AS rule_rows', NEW.query) INTO v_plan;
            RESET ROLE;
        EXCEPTION WHEN OTHERS THEN
            RESET ROLE;
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

CREATE TRIGGER monitoring_alert_rules_validate
BEFORE INSERT OR UPDATE ON monitoring_alert_rules
FOR EACH ROW EXECUTE FUNCTION _monitoring_validate_rule();

-- What a rule sees at one moment: per group, the observed value, whether its condition holds, and when the
-- evidence began. Read-only: evaluation and backtests share it.
CREATE FUNCTION _monitoring_rule_observations(p_rule monitoring_alert_rules, p_at timestamptz)
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
        USING p_rule.event_type, v_from, p_at, p_rule.created_at <= p_at - 2 * p_rule.window_size;
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
        SET LOCAL ROLE monitoring_rule_runner;
        PERFORM set_config('search_path', 'public', TRUE);  -- restored when this function returns
        RETURN QUERY EXECUTE format(
            'SELECT coalesce(to_jsonb(r) -> ''group_key'', ''{}''::jsonb), (to_jsonb(r) ->> ''value'')::double precision, '
            '       TRUE, coalesce((to_jsonb(r) ->> ''occurred_at'')::timestamptz, $1), to_jsonb(r) ->> ''message'' '
            'FROM (%s) AS r', p_rule.query)
        USING p_at;
        RESET ROLE;
    END IF;
END
$$;

CREATE FUNCTION _monitoring_rule_alert_text(p_rule monitoring_alert_rules, p_observed double precision)
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

-- Evaluate one rule: fire for groups whose condition holds, and (unless p_fire_only) resolve alerts whose
-- condition has been clear for clear_after.
CREATE FUNCTION _monitoring_evaluate_rule(p_rule monitoring_alert_rules, p_at timestamptz, p_fire_only boolean DEFAULT FALSE)
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
                PERFORM public.monitoring_resolve_alert(
                    v_state.alert_id, 'pgalert', format('condition clear for %s', p_at - v_state.clear_since),
                    FALSE, p_at
                );
            END IF;
            DELETE FROM public._monitoring_rule_state AS s
            WHERE s.rule_id = v_state.rule_id AND s.group_key = v_state.group_key;
        END IF;
    END LOOP;
END
$$;

CREATE FUNCTION monitoring_evaluate_alert_rules(p_at timestamptz DEFAULT now())
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
    v_row record;
    v_any boolean;
    v_max double precision;
BEGIN
    FOR v_rule IN
        SELECT * FROM public.monitoring_alert_rules AS r
        WHERE r.enabled
          -- a second of slack: pg_cron starts a little after the minute
          AND (r.last_evaluated_at IS NULL OR r.last_evaluated_at + r.evaluate_every <= p_at + interval '1 second')
        ORDER BY r.rule_name
        FOR UPDATE SKIP LOCKED  -- two evaluations at once share the rules instead of doubling them
    LOOP
        rule_name := v_rule.rule_name; threshold := v_rule.threshold; error := NULL;
        BEGIN
            v_any := FALSE;
            v_max := NULL;
            FOR v_row IN SELECT * FROM public._monitoring_evaluate_rule(v_rule, p_at) LOOP
                group_key := v_row.group_key; observed := v_row.observed; fired := v_row.fired; alert_id := v_row.alert_id;
                v_any := TRUE;
                v_max := greatest(v_max, v_row.observed);
                RETURN NEXT;
            END LOOP;
            UPDATE public.monitoring_alert_rules AS r
            SET last_evaluated_at = p_at, last_error = NULL, last_error_at = NULL, last_observed = v_max
            WHERE r.id = v_rule.id;
            IF v_rule.last_error IS NOT NULL THEN
                PERFORM public.monitoring_resolve_alert(a.id, 'pgalert', 'the rule evaluates again', FALSE, p_at)
                FROM public.monitoring_alerts AS a
                WHERE a.dedup_key = 'rule_evaluation_error:' || v_rule.rule_name AND a.status <> 'resolved';
            END IF;
            IF NOT v_any THEN
                group_key := NULL; observed := NULL; fired := FALSE; alert_id := NULL;
                RETURN NEXT;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RESET ROLE;
            error := SQLERRM;
            UPDATE public.monitoring_alert_rules AS r
            SET last_evaluated_at = p_at, last_error = SQLERRM, last_error_at = p_at
            WHERE r.id = v_rule.id;
            alert_id := public.monitoring_raise_alert(
                'rule_evaluation_error', 'warning', left('Rule ' || v_rule.rule_name || ' failed: ' || SQLERRM, 500),
                'The rule was skipped; the other rules still ran. Fix it in monitoring_alert_rules.',
                v_rule.rule_name, 'rule_evaluation_error:' || v_rule.rule_name,
                jsonb_build_object('rule', v_rule.rule_name, 'error', SQLERRM), p_at, p_at
            );
            group_key := NULL; observed := NULL; fired := FALSE;
            RETURN NEXT;
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION monitoring_evaluate_alert_rules(timestamptz) IS
'Evaluate every enabled rule that is due (evaluate_every since its last run) at p_at: fire one alert per rule
and group whose condition holds (deduplicated: one open alert per rule and group), resolve alerts whose
condition has been clear for clear_after. One row per rule and group: observed value, threshold, whether it
fired now, the alert id, and the error if the rule failed (it then raises rule_evaluation_error and the other
rules still run). pg_cron runs it every minute.';

CREATE FUNCTION monitoring_backtest_rule(p_rule_name text, p_from timestamptz, p_to timestamptz, p_step interval DEFAULT NULL)
RETURNS TABLE (would_fire_at timestamptz, group_key jsonb, observed double precision, cleared_at timestamptz)
LANGUAGE plpgsql  -- not STABLE: a sql rule switches to monitoring_rule_runner, which needs SET
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
    v_rule.created_at := '-infinity';  -- a backtest judges the events, not the rule's age
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

------------------------------------------------------------------------------------------------------------
-- Fast path: count rules fire from the INSERT of the event that crosses them
------------------------------------------------------------------------------------------------------------
CREATE FUNCTION _monitoring_events_after_insert()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rule public.monitoring_alert_rules;
BEGIN
    FOR v_rule IN
        SELECT r.* FROM public.monitoring_alert_rules AS r
        WHERE r.enabled AND r.rule_type = 'count' AND r.comparison IN ('>', '>=')
          AND r.event_type IN (SELECT DISTINCT e.event_type FROM new_events AS e)
          -- an ungrouped rule whose alert is open has nothing to add until the minute evaluation
          AND NOT (cardinality(r.group_by) = 0 AND EXISTS (
              SELECT FROM public._monitoring_rule_state AS s
              JOIN public.monitoring_alerts AS a ON a.id = s.alert_id
              WHERE s.rule_id = r.id AND a.status <> 'resolved'
          ))
    LOOP
        BEGIN
            PERFORM FROM public._monitoring_evaluate_rule(v_rule, now(), TRUE);
        EXCEPTION WHEN OTHERS THEN
            -- never fail the writer's INSERT: the minute evaluation records the error
            NULL;
        END;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER monitoring_events_detect
AFTER INSERT ON monitoring_events
REFERENCING NEW TABLE AS new_events
FOR EACH STATEMENT EXECUTE FUNCTION _monitoring_events_after_insert();

------------------------------------------------------------------------------------------------------------
-- Health probes, run by dispatchers
------------------------------------------------------------------------------------------------------------
CREATE TABLE monitoring_health_checks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CONSTRAINT check_name_is_simple CHECK (name ~ '^[a-z][a-z0-9_.-]{0,62}$'),
    url text NOT NULL CONSTRAINT url_is_http_or_env CHECK (url ~* '^https?://[^/\s]+' OR url ~ '^env:[A-Z_][A-Z0-9_]*$'),
    method text NOT NULL DEFAULT 'GET' CONSTRAINT method_is_known CHECK (method IN ('GET', 'HEAD', 'POST')),
    expected_status integer NOT NULL DEFAULT 200 CONSTRAINT expected_status_is_http CHECK (expected_status BETWEEN 100 AND 599),
    timeout interval NOT NULL DEFAULT '5 seconds' CONSTRAINT timeout_is_sensible CHECK (timeout > '0' AND timeout <= '60 seconds'),
    check_interval interval NOT NULL DEFAULT '5 minutes' CONSTRAINT interval_is_sensible CHECK (check_interval >= '1 second'),
    enabled boolean NOT NULL DEFAULT TRUE,
    next_run_at timestamptz NOT NULL DEFAULT now(),
    last_run_at timestamptz,
    last_status integer,
    last_response_ms double precision,
    last_error text
);
COMMENT ON TABLE monitoring_health_checks IS
'HTTP probes. Dispatchers run due checks (a check is claimed by one dispatcher only) and record each result as
events: api_response_time (value: milliseconds, labels: check, status) and, when the status is not
expected_status or the request fails, health_check_failure (labels: check, reason). url is http(s)://... or
env:NAME, read from each dispatcher''s environment so a URL carrying a secret never lands here; PRODUCTION_URL
in a dispatcher''s environment adds the check named production (url env:PRODUCTION_URL).';

CREATE FUNCTION monitoring_claim_health_checks(p_limit integer DEFAULT 10)
RETURNS TABLE (check_id bigint, name text, url text, method text, expected_status integer, timeout_seconds double precision)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH due AS (
        SELECT c.id FROM public.monitoring_health_checks AS c
        WHERE c.enabled AND c.next_run_at <= now()
        ORDER BY c.next_run_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE public.monitoring_health_checks AS c
    SET next_run_at = now() + c.check_interval, last_run_at = now()
    FROM due WHERE c.id = due.id
    RETURNING c.id, c.name, c.url, c.method, c.expected_status, date_part('epoch', c.timeout)
$$;
COMMENT ON FUNCTION monitoring_claim_health_checks(integer) IS
'Dispatchers only: take the due health checks and move each to its next run, so no other dispatcher runs it.';

CREATE FUNCTION monitoring_record_health_check(
    p_check_id bigint, p_status integer, p_response_ms double precision, p_error text, p_at timestamptz DEFAULT now()
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_check public.monitoring_health_checks;
BEGIN
    UPDATE public.monitoring_health_checks AS c
    SET last_status = p_status, last_response_ms = p_response_ms, last_error = p_error
    WHERE c.id = p_check_id
    RETURNING * INTO v_check;
    IF NOT FOUND THEN
        RETURN;  -- deleted while it ran
    END IF;
    IF p_response_ms IS NOT NULL AND p_error IS NULL THEN
        INSERT INTO public.monitoring_events (event_type, value, labels, occurred_at)
        VALUES ('api_response_time', p_response_ms,
                jsonb_build_object('check', v_check.name, 'status', p_status), p_at);
    END IF;
    IF p_error IS NOT NULL OR p_status IS DISTINCT FROM v_check.expected_status THEN
        INSERT INTO public.monitoring_events (event_type, value, labels, occurred_at)
        VALUES ('health_check_failure', p_response_ms,
                jsonb_build_object('check', v_check.name,
                                   'reason', coalesce(p_error, format('HTTP %s, expected %s', p_status, v_check.expected_status))),
                p_at);
    END IF;
END
$$;
COMMENT ON FUNCTION monitoring_record_health_check(bigint, integer, double precision, text, timestamptz) IS
'Dispatchers only: record one probe result as events (api_response_time, and health_check_failure when it
failed or answered an unexpected status).';

CREATE FUNCTION monitoring_ensure_health_check(p_name text, p_url text, p_interval interval DEFAULT '5 minutes')
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.monitoring_health_checks AS c (name, url, check_interval) VALUES (p_name, p_url, p_interval)
    ON CONFLICT (name) DO UPDATE SET url = excluded.url
$$;
COMMENT ON FUNCTION monitoring_ensure_health_check(text, text, interval) IS
'Dispatchers only: create the named check, or point it at p_url (PRODUCTION_URL makes the check production
with url env:PRODUCTION_URL).';

------------------------------------------------------------------------------------------------------------
-- The seed's rules, targets and schedules
------------------------------------------------------------------------------------------------------------
INSERT INTO monitoring_alert_rules
(rule_name, rule_type, event_type, window_size, aggregate, comparison, threshold, min_samples, group_by, severity, description)
VALUES
(
    'payment_failure_critical', 'count', 'payment_failure', '5 minutes', NULL, '>=', 3, 1, '{}', 'critical',
    'Payments are failing: 3 or more payment_failure events in 5 minutes.'
),
(
    'database_connection_failure', 'count', 'database_connection_failure', '1 minute', NULL, '>=', 1, 1, '{}', 'critical',
    'The application cannot reach its database.'
),
(
    'api_response_degradation', 'aggregate', 'api_response_time', '5 minutes', 'p95', '>', 3000, 5, '{}', 'critical',
    'API P95 response time above 3 s over 5 minutes.'
),
(
    'auth_failure_spike', 'spike', 'auth_failure', '5 minutes', NULL, '>=', 300, 10, '{}', 'critical',
    'Authentication failures up 300% (four times) on the previous 5 minutes: credential stuffing?'
),
(
    'error_rate_spike', 'count', 'application_error', '5 minutes', NULL, '>=', 10, 1, '{}', 'warning',
    '10 or more application errors in 5 minutes.'
),
(
    'api_response_warning', 'aggregate', 'api_response_time', '5 minutes', 'p95', '>', 1500, 5, '{}', 'warning',
    'API P95 response time above 1.5 s over 5 minutes.'
),
(
    'memory_usage_high', 'aggregate', 'memory_usage_percent', '5 minutes', 'last', '>', 85, 1, '{host}', 'warning',
    'A host''s memory use is above 85%.'
);

INSERT INTO monitoring_sla_targets (metric, alert_type, target, compliance) VALUES
('mttd', 'database_connection_failure', 60, 0.90);

INSERT INTO monitoring_schedules (job_name, schedule, command, description) VALUES
(
    'pgalert_evaluate_rules', '* * * * *', 'SELECT monitoring_evaluate_alert_rules()',
    'Every minute: evaluate the due rules, fire and resolve their alerts.'
),
(
    'pgalert_event_partitions', '7 * * * *', 'SELECT monitoring_maintain_event_partitions()',
    'Hourly: create the next days'' event partitions and drop those past retention.'
);
SELECT monitoring_install_schedules();

------------------------------------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------------------------------------
REVOKE ALL ON monitoring_events, monitoring_alert_rules, monitoring_health_checks, monitoring_settings,
_monitoring_rule_state FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
GRANT INSERT ON monitoring_events TO monitoring_writer, monitoring_dispatcher;
GRANT SELECT ON monitoring_events, monitoring_alert_rules, monitoring_health_checks, monitoring_settings
TO monitoring_reader;
GRANT INSERT, UPDATE, DELETE ON monitoring_alert_rules, monitoring_health_checks, monitoring_settings TO monitoring_admin;
GRANT EXECUTE ON FUNCTION monitoring_evaluate_alert_rules(timestamptz),
monitoring_maintain_event_partitions(integer, timestamptz) TO monitoring_admin;
GRANT EXECUTE ON FUNCTION monitoring_backtest_rule(text, timestamptz, timestamptz, interval),
_monitoring_rule_observations(monitoring_alert_rules, timestamptz) TO monitoring_reader, monitoring_admin;
GRANT monitoring_rule_runner TO monitoring_admin, monitoring_reader;
GRANT USAGE ON SCHEMA public TO monitoring_rule_runner;
GRANT SELECT ON monitoring_events, monitoring_alerts TO monitoring_rule_runner;
GRANT SELECT, UPDATE ON monitoring_health_checks TO monitoring_dispatcher;
GRANT SELECT ON monitoring_settings TO monitoring_dispatcher;
GRANT EXECUTE ON FUNCTION monitoring_claim_health_checks(integer),
monitoring_record_health_check(bigint, integer, double precision, text, timestamptz),
monitoring_ensure_health_check(text, text, interval) TO monitoring_dispatcher;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0004', 'rules');
