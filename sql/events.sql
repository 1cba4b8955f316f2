-- Events: daily partitions with retention, and detection at INSERT time for count rules.
--
-- Count rules fire from the INSERT itself: a statement trigger on monitoring_events adds the statement's
-- events to per-second running counts (_monitoring_rule_counts) and sums those, so the check costs the same
-- however busy the window is. Counts never make one writer wait for another: a writer adds to a second's row
-- only if no other open transaction holds it (SKIP LOCKED), else it writes a row of its own. A minute job
-- folds rows older than a minute into cells of 1/60 of the window (at least 10 s) and drops rows no window
-- reaches. A sum over the rows that overlap the window is an upper bound on the true count (by at most one
-- cell at the window's start), so it only decides whether to run the exact evaluation, which counts the
-- events themselves and fires. Counts are rebuilt from the events when a count rule is created or its event
-- type, groups or window change, so a new rule sees the events already in its window.
--
-- Owns: monitoring_events, monitoring_events_default, _monitoring_rule_counts

CREATE OR REPLACE FUNCTION monitoring_maintain_event_partitions(p_days_ahead integer DEFAULT 3, p_at timestamptz DEFAULT now())
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
REVOKE ALL ON FUNCTION monitoring_maintain_event_partitions(integer, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_maintain_event_partitions(integer, timestamptz) TO monitoring_admin;

CREATE OR REPLACE FUNCTION _monitoring_events_after_insert()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_at timestamptz := now();
    v_rule_ids bigint[] := '{}';
    v_groups jsonb[] := '{}';
    v_rule public.monitoring_alert_rules;
BEGIN
    BEGIN
        WITH added AS MATERIALIZED (
            -- events of one type, label set and second first: a statement holds few of those, and the group key
            -- is then computed once for each rather than once per event and rule
            SELECT r.id AS rule_id, public._monitoring_group_key(r.group_by, e.labels) AS group_key, e.second,
                   sum(e.events)::bigint AS events
            FROM (
                SELECT n.event_type, n.labels, date_trunc('second', n.occurred_at) AS second, count(*) AS events
                FROM new_events AS n
                WHERE n.occurred_at <= v_at
                GROUP BY 1, 2, 3
            ) AS e
            JOIN public.monitoring_alert_rules AS r ON r.event_type = e.event_type
            WHERE r.enabled AND r.rule_type = 'count' AND r.comparison IN ('>', '>=')
              AND e.second + interval '1 second' > v_at - r.window_size  -- the cell reaches into the window
            GROUP BY 1, 2, 3
        ),
        free AS MATERIALIZED (
            -- a second's rows that no other open transaction holds; those it holds are skipped, never waited on
            SELECT c.ctid AS row_id, a.rule_id, a.group_key, a.second, a.events
            FROM added AS a
            JOIN public._monitoring_rule_counts AS c
                ON c.rule_id = a.rule_id AND c.group_key = a.group_key
                AND c.until_at = a.second + interval '1 second' AND c.from_at = a.second
            FOR UPDATE OF c SKIP LOCKED
        ),
        updated AS (
            UPDATE public._monitoring_rule_counts AS c SET events = c.events + f.events
            FROM (SELECT DISTINCT ON (f.rule_id, f.group_key, f.second) f.* FROM free AS f) AS f
            WHERE c.ctid = f.row_id
            RETURNING f.rule_id, f.group_key, f.second
        ),
        inserted AS (
            INSERT INTO public._monitoring_rule_counts (rule_id, group_key, from_at, until_at, events)
            SELECT a.rule_id, a.group_key, a.second, a.second + interval '1 second', a.events
            FROM added AS a
            WHERE NOT EXISTS (
                SELECT FROM updated AS u
                WHERE u.rule_id = a.rule_id AND u.group_key = a.group_key AND u.second = a.second
            )
        )
        SELECT coalesce(array_agg(a.rule_id), '{}'), coalesce(array_agg(a.group_key), '{}')
        INTO v_rule_ids, v_groups
        FROM added AS a;
    EXCEPTION WHEN OTHERS THEN
        -- never fail the writer's INSERT: the minute evaluation still counts the events themselves
        RETURN NULL;
    END;
    FOR v_rule IN
        SELECT r.* FROM public.monitoring_alert_rules AS r
        WHERE r.id IN (SELECT DISTINCT t.rule_id FROM unnest(v_rule_ids, v_groups) AS t (rule_id, group_key))
          AND EXISTS (
              SELECT FROM (SELECT DISTINCT t.group_key FROM unnest(v_rule_ids, v_groups) AS t (rule_id, group_key)
                           WHERE t.rule_id = r.id) AS touched
              WHERE NOT EXISTS (SELECT FROM public._monitoring_rule_state AS s
                                JOIN public.monitoring_alerts AS a ON a.id = s.alert_id
                                WHERE s.rule_id = r.id AND s.group_key = touched.group_key AND a.status <> 'resolved')
                AND (SELECT CASE r.comparison WHEN '>' THEN sum(c.events) > r.threshold ELSE sum(c.events) >= r.threshold END
                     FROM public._monitoring_rule_counts AS c
                     WHERE c.rule_id = r.id AND c.group_key = touched.group_key AND c.until_at > v_at - r.window_size)
          )
    LOOP
        BEGIN
            -- rare (once per alert opened): the exact evaluation counts the events and decides
            PERFORM FROM public._monitoring_evaluate_rule(v_rule, v_at, TRUE);
        EXCEPTION WHEN OTHERS THEN
            NULL;
        END;
    END LOOP;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_events_after_insert() FROM PUBLIC;

CREATE OR REPLACE TRIGGER monitoring_events_detect
AFTER INSERT ON monitoring_events
REFERENCING NEW TABLE AS new_events
FOR EACH STATEMENT EXECUTE FUNCTION _monitoring_events_after_insert();
COMMENT ON TRIGGER monitoring_events_detect ON monitoring_events IS
'Per statement: count rules learn of the new events at once (rule counts), so a burst fires without waiting for pg_cron.';

-- The group an event belongs to under a rule: the same object _monitoring_rule_observations builds.
CREATE OR REPLACE FUNCTION _monitoring_group_key(p_group_by text[], p_labels jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN cardinality(p_group_by) = 0 THEN '{}'::jsonb
                ELSE (SELECT jsonb_object_agg(k, p_labels -> k) FROM unnest(p_group_by) AS k) END
$$;
REVOKE ALL ON FUNCTION _monitoring_group_key(text[], jsonb) FROM PUBLIC;

-- The width of a folded cell: 1/60 of the window, at least 10 seconds.
CREATE OR REPLACE FUNCTION _monitoring_count_cell(p_window interval)
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT make_interval(secs => greatest(10, floor(extract(EPOCH FROM p_window) / 60)))
$$;
REVOKE ALL ON FUNCTION _monitoring_count_cell(interval) FROM PUBLIC;

CREATE OR REPLACE FUNCTION _monitoring_rebuild_rule_counts(p_rule monitoring_alert_rules, p_at timestamptz DEFAULT now())
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cell double precision := extract(EPOCH FROM public._monitoring_count_cell(p_rule.window_size));
BEGIN
    DELETE FROM public._monitoring_rule_counts AS c WHERE c.rule_id = p_rule.id;
    IF NOT (p_rule.enabled AND p_rule.rule_type = 'count') THEN
        RETURN;
    END IF;
    INSERT INTO public._monitoring_rule_counts (rule_id, group_key, from_at, until_at, events)
    SELECT p_rule.id, w.group_key, w.cell, w.cell + make_interval(secs => v_cell), w.events
    FROM (
        SELECT public._monitoring_group_key(p_rule.group_by, e.labels) AS group_key,
               to_timestamp(floor(extract(EPOCH FROM e.occurred_at) / v_cell) * v_cell) AS cell,
               count(*) AS events
        FROM public.monitoring_events AS e
        WHERE e.event_type = p_rule.event_type AND e.occurred_at > p_at - p_rule.window_size AND e.occurred_at <= p_at
        GROUP BY 1, 2
    ) AS w;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_rebuild_rule_counts(monitoring_alert_rules, timestamptz) FROM PUBLIC;

CREATE OR REPLACE FUNCTION _monitoring_rule_counts_follow_rule()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM public._monitoring_rebuild_rule_counts(NEW);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_rule_counts_follow_rule() FROM PUBLIC;

CREATE OR REPLACE TRIGGER monitoring_alert_rules_counts
AFTER INSERT OR UPDATE OF rule_type, event_type, group_by, window_size, enabled ON monitoring_alert_rules
FOR EACH ROW EXECUTE FUNCTION _monitoring_rule_counts_follow_rule();
COMMENT ON TRIGGER monitoring_alert_rules_counts ON monitoring_alert_rules IS
'A count rule whose event, grouping or window changes starts its counts afresh.';

CREATE OR REPLACE FUNCTION monitoring_compact_rule_counts(p_at timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rows bigint;
BEGIN
    -- rows a writer still holds are left for the next run: compaction never waits on an app's transaction
    DELETE FROM public._monitoring_rule_counts AS c
    USING public.monitoring_alert_rules AS r
    WHERE c.rule_id = r.id
      AND c.until_at <= p_at - r.window_size
      AND c.ctid IN (SELECT c2.ctid FROM public._monitoring_rule_counts AS c2 WHERE c2.rule_id = r.id FOR UPDATE SKIP LOCKED);
    WITH cells AS (
        SELECT r.id, extract(EPOCH FROM public._monitoring_count_cell(r.window_size)) AS secs
        FROM public.monitoring_alert_rules AS r
    ),
    folded AS (
        DELETE FROM public._monitoring_rule_counts AS c
        USING cells
        WHERE c.rule_id = cells.id
          AND c.until_at <= p_at - interval '1 minute'
          AND c.until_at - c.from_at < make_interval(secs => cells.secs)
          AND c.ctid IN (SELECT c2.ctid FROM public._monitoring_rule_counts AS c2 WHERE c2.rule_id = cells.id FOR UPDATE SKIP LOCKED)
        RETURNING c.rule_id, c.group_key, c.from_at, c.events, cells.secs
    )
    INSERT INTO public._monitoring_rule_counts (rule_id, group_key, from_at, until_at, events)
    SELECT f.rule_id, f.group_key, f.cell, f.cell + make_interval(secs => f.secs), sum(f.events)
    FROM (
        SELECT folded.*, to_timestamp(floor(extract(EPOCH FROM folded.from_at) / folded.secs) * folded.secs) AS cell
        FROM folded
    ) AS f
    GROUP BY f.rule_id, f.group_key, f.cell, f.secs;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows;
END
$$;
COMMENT ON FUNCTION monitoring_compact_rule_counts(timestamptz) IS
'Keep the running counts of count rules small: fold rows older than a minute into cells of 1/60 of the rule''s
window (at least 10 s) and drop rows no window reaches; returns how many folded rows it wrote. pg_cron runs it
every minute. Rows held by an open transaction are left for the next run.';
REVOKE ALL ON FUNCTION monitoring_compact_rule_counts(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_compact_rule_counts(timestamptz) TO monitoring_admin;
