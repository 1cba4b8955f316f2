-- SLA: one row per alert in monitoring_sla_metrics, kept current by the lifecycle; targets as data; summaries.
--
-- Definitions (also in COMMENT ON and the README):
--   MTTD = detected - occurred            delivery time = first notified - detected
--   MTTA = acknowledged - detected        MTTR = resolved - detected (and, separately, resolved - acknowledged)
--   false-positive rate = resolved as false positive / resolved
--   provider success rate = deliveries that succeeded / deliveries attempted (first attempt, and eventually)
-- Windows: an alert counts in the window it was detected in, (at - hours, at].
--
-- Owns: monitoring_sla_metrics, monitoring_sla_targets

CREATE OR REPLACE FUNCTION monitoring_sla_target(p_metric text, p_severity text, p_alert_type text)
RETURNS numeric
LANGUAGE sql STABLE
AS $$
    SELECT t.target
    FROM public.monitoring_sla_targets AS t
    WHERE t.metric = p_metric
      AND (t.severity IS NULL OR t.severity = p_severity)
      AND (t.alert_type IS NULL OR t.alert_type = p_alert_type)
    ORDER BY (t.alert_type IS NOT NULL) DESC, (t.severity IS NOT NULL) DESC
    LIMIT 1
$$;
COMMENT ON FUNCTION monitoring_sla_target(text, text, text) IS
'The target that applies to one alert: its alert type''s, else its severity''s, else the default.';
REVOKE ALL ON FUNCTION monitoring_sla_target(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_sla_target(text, text, text) TO monitoring_reader;

-- New alerts' SLA rows, with their own times (history keeps its own); handoff announcements and pgalert's own
-- messages to people (sql/paging.sql) are not incidents and are kept out of the figures. Called by the INSERT trigger (sql/alerts.sql).
CREATE OR REPLACE FUNCTION _monitoring_sla_open(p_alerts monitoring_alerts[])
RETURNS void
LANGUAGE plpgsql
-- runs at every INSERT, called only by the INSERT trigger, whose SET clauses hold for it (see
-- _monitoring_enqueue_new_alerts)
AS $$
BEGIN
    INSERT INTO public.monitoring_sla_metrics (
        alert_id, alert_type, severity, occurred_at, detected_at,
        acknowledged_at, acknowledged_by, resolved_at, resolved_by, false_positive
    )
    SELECT a.id, a.alert_type, a.severity, a.occurred_at, a.created_at,
           a.acknowledged_at, a.acknowledged_by, a.resolved_at, a.resolved_by, a.false_positive
    FROM unnest(p_alerts) AS a
    WHERE a.alert_type NOT IN ('oncall_handoff', 'pgalert_contact_verification', 'pgalert_test_page');
END
$$;
REVOKE ALL ON FUNCTION _monitoring_sla_open(monitoring_alerts[]) FROM PUBLIC;

-- The highest escalation level each alert reached (sql/escalation.sql); a level never goes down.
CREATE OR REPLACE FUNCTION _monitoring_sla_escalated(p_alert_ids bigint[], p_levels integer[])
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.monitoring_sla_metrics AS s SET escalation_level = reached.level
    FROM unnest(p_alert_ids, p_levels) AS reached (alert_id, level)
    WHERE s.alert_id = reached.alert_id AND reached.level > s.escalation_level
$$;
REVOKE ALL ON FUNCTION _monitoring_sla_escalated(bigint[], integer[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION _monitoring_sla_on_alert_update()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan  -- see _monitoring_alert_before_insert
AS $$
BEGIN
    UPDATE public.monitoring_sla_metrics AS s
    SET severity = a.severity,
        acknowledged_at = a.acknowledged_at,
        acknowledged_by = a.acknowledged_by,
        resolved_at = a.resolved_at,
        resolved_by = a.resolved_by,
        false_positive = a.false_positive
    FROM changed_alerts AS a
    WHERE s.alert_id = a.id
      AND (s.severity, s.acknowledged_at, s.resolved_at, s.false_positive)
      IS DISTINCT FROM (a.severity, a.acknowledged_at, a.resolved_at, a.false_positive);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_sla_on_alert_update() FROM PUBLIC;

CREATE OR REPLACE TRIGGER monitoring_alerts_sla_update
AFTER UPDATE ON monitoring_alerts
REFERENCING NEW TABLE AS changed_alerts
FOR EACH STATEMENT EXECUTE FUNCTION _monitoring_sla_on_alert_update();
COMMENT ON TRIGGER monitoring_alerts_sla_update ON monitoring_alerts IS
'Acknowledge, resolve and escalation times reach the alert''s SLA row in the same transaction.';

CREATE OR REPLACE FUNCTION _monitoring_sla_on_delivery_update()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan  -- see _monitoring_alert_before_insert
AS $$
BEGIN
    -- Every recorder locks the rows it will change in alert order first: two dispatchers recording results
    -- for overlapping alerts then wait for each other instead of each holding what the other needs (they
    -- deadlocked when the join below chose the order).
    -- A group's notification notifies its members that had joined when it was claimed (sql/grouping.sql).
    PERFORM
    FROM (
        SELECT notified.alert_id, min(notified.first_at) AS first_at
        FROM changed_deliveries AS d
        CROSS JOIN LATERAL (
            SELECT d.alert_id, d.completed_at AS first_at
            UNION ALL
            SELECT m.alert_id, d.completed_at
            FROM public.monitoring_alert_group_members AS m
            WHERE m.group_alert_id = d.alert_id AND m.joined_at <= d.first_attempt_at
        ) AS notified
        WHERE d.status = 'succeeded' AND d.action = 'trigger'
        GROUP BY notified.alert_id
    ) AS delivered
    JOIN public.monitoring_sla_metrics AS s ON s.alert_id = delivered.alert_id
    WHERE s.first_notified_at IS NULL OR s.first_notified_at > delivered.first_at
    ORDER BY s.alert_id
    FOR UPDATE OF s;
    UPDATE public.monitoring_sla_metrics AS s
    SET first_notified_at = delivered.first_at
    FROM (
        SELECT notified.alert_id, min(notified.first_at) AS first_at
        FROM changed_deliveries AS d
        CROSS JOIN LATERAL (
            SELECT d.alert_id, d.completed_at AS first_at
            UNION ALL
            SELECT m.alert_id, d.completed_at
            FROM public.monitoring_alert_group_members AS m
            WHERE m.group_alert_id = d.alert_id AND m.joined_at <= d.first_attempt_at
        ) AS notified
        WHERE d.status = 'succeeded' AND d.action = 'trigger'
        GROUP BY notified.alert_id
    ) AS delivered
    WHERE s.alert_id = delivered.alert_id
      AND (s.first_notified_at IS NULL OR s.first_notified_at > delivered.first_at);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_sla_on_delivery_update() FROM PUBLIC;

CREATE OR REPLACE TRIGGER monitoring_deliveries_sla_update
AFTER UPDATE ON monitoring_deliveries
REFERENCING NEW TABLE AS changed_deliveries
FOR EACH STATEMENT EXECUTE FUNCTION _monitoring_sla_on_delivery_update();
COMMENT ON TRIGGER monitoring_deliveries_sla_update ON monitoring_deliveries IS
'The first successful trigger delivery sets the alert''s delivery time in its SLA row.';

-- Every alert detected in the window with each duration and the target that applies to it.
CREATE OR REPLACE FUNCTION _monitoring_sla_durations(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (
    alert_id bigint, alert_type text, severity text, metric text, seconds double precision,
    target double precision
)
LANGUAGE sql STABLE
AS $$
    WITH measured AS (
        SELECT s.alert_id, s.alert_type, s.severity, m.metric,
               date_part('epoch', m.duration) AS seconds  -- double precision; extract() would build numerics
        FROM public.monitoring_sla_metrics AS s
        CROSS JOIN LATERAL (VALUES
            ('mttd', s.detected_at - s.occurred_at),
            ('delivery_time', s.first_notified_at - s.detected_at),
            ('mtta', s.acknowledged_at - s.detected_at),
            ('mttr', s.resolved_at - s.detected_at),
            ('mttr_after_ack', s.resolved_at - s.acknowledged_at)
        ) AS m (metric, duration)
        WHERE s.detected_at > p_from AND s.detected_at <= p_to AND m.duration IS NOT NULL
    ),
    -- resolve each target once per (metric, severity, type), not once per alert
    scopes AS (
        SELECT DISTINCT ms.metric, ms.severity, ms.alert_type FROM measured AS ms
    ),
    targets AS MATERIALIZED (  -- once per scope: inlined, the lookup would run for every alert
        SELECT sc.metric, sc.severity, sc.alert_type,
               public.monitoring_sla_target(sc.metric, sc.severity, sc.alert_type)::double precision AS target
        FROM scopes AS sc
    )
    SELECT ms.alert_id, ms.alert_type, ms.severity, ms.metric, ms.seconds, t.target
    FROM measured AS ms
    JOIN targets AS t USING (metric, severity, alert_type)
$$;
REVOKE ALL ON FUNCTION _monitoring_sla_durations(timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_sla_durations(timestamptz, timestamptz) TO monitoring_reader;

-- Every delivery of an alert detected in the window that has an outcome: did it succeed at once, eventually?
CREATE OR REPLACE FUNCTION _monitoring_sla_deliveries(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (
    alert_id bigint, alert_type text, severity text, provider text, first_attempt_succeeded boolean,
    succeeded boolean
)
LANGUAGE sql STABLE
AS $$
    SELECT s.alert_id, s.alert_type, s.severity, d.provider, d.first_attempt_succeeded, d.succeeded
    FROM public.monitoring_sla_metrics AS s
    -- OFFSET 0 keeps this a per-alert index probe; flattened, the planner hashes the whole outbox instead
    CROSS JOIN LATERAL (
        SELECT dd.provider, dd.status = 'succeeded' AS succeeded,
               EXISTS (
                   SELECT FROM public.monitoring_delivery_attempts AS a
                   WHERE a.delivery_id = dd.id AND a.attempt = 1 AND a.outcome = 'succeeded'
               ) AS first_attempt_succeeded
        FROM public.monitoring_deliveries AS dd
        WHERE dd.alert_id = s.alert_id AND dd.status IN ('succeeded', 'failed')
        OFFSET 0
    ) AS d
    WHERE s.detected_at > p_from AND s.detected_at <= p_to
$$;
REVOKE ALL ON FUNCTION _monitoring_sla_deliveries(timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_sla_deliveries(timestamptz, timestamptz) TO monitoring_reader;

CREATE OR REPLACE FUNCTION monitoring_get_sla_summary(p_hours numeric DEFAULT 24, p_at timestamptz DEFAULT now())
RETURNS TABLE (
    metric text,
    unit text,
    samples bigint,
    mean numeric,
    p50 numeric,
    p95 numeric,
    target numeric,
    targets_applied text,
    within_target numeric,
    compliance_target numeric,
    target_met boolean
)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off  -- compiling costs more than these window queries run
AS $$
DECLARE
    v_from timestamptz := p_at - make_interval(secs => p_hours * 3600);
BEGIN
    IF p_hours IS NULL OR p_hours <= 0 THEN
        RAISE EXCEPTION 'hours must be positive, got %', p_hours USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    WITH durations AS (
        SELECT * FROM public._monitoring_sla_durations(v_from, p_at)
    ),
    times AS (
        SELECT m.metric, 'seconds'::text AS unit, count(d.seconds) AS samples,
               round(avg(d.seconds)::numeric, 3) AS mean,
               round(percentile_cont(0.5) WITHIN GROUP (ORDER BY d.seconds)::numeric, 3) AS p50,
               round(percentile_cont(0.95) WITHIN GROUP (ORDER BY d.seconds)::numeric, 3) AS p95,
               public.monitoring_sla_target(m.metric, NULL, NULL) AS target,
               -- which targets decided within_target: a type's or severity's own, or the default
               (SELECT string_agg(format('%s s for %s', applied.target, applied.alerts), ', '
                                  ORDER BY applied.alerts DESC, applied.target)
                FROM (SELECT d2.target, count(*) AS alerts FROM durations AS d2
                      WHERE d2.metric = m.metric AND d2.seconds IS NOT NULL AND d2.target IS NOT NULL
                      GROUP BY d2.target) AS applied) AS targets_applied,
               round(avg((d.seconds <= d.target)::integer)::numeric, 4) AS within_target,
               (SELECT t.compliance FROM public.monitoring_sla_targets AS t
                WHERE t.metric = m.metric AND t.severity IS NULL AND t.alert_type IS NULL) AS compliance_target,
               m.ord
        FROM (VALUES ('mttd', 1), ('delivery_time', 2), ('mtta', 3), ('mttr', 4), ('mttr_after_ack', 5))
            AS m (metric, ord)
        LEFT JOIN durations AS d ON d.metric = m.metric
        GROUP BY m.metric, m.ord
    ),
    resolved AS (
        SELECT count(*) AS samples, avg(s.false_positive::integer)::numeric AS rate
        FROM public.monitoring_sla_metrics AS s
        WHERE s.detected_at > v_from AND s.detected_at <= p_at AND s.resolved_at IS NOT NULL
    ),
    deliveries AS (
        SELECT count(*) AS samples,
               avg(d.first_attempt_succeeded::integer)::numeric AS first_rate,
               avg(d.succeeded::integer)::numeric AS eventual_rate
        FROM public._monitoring_sla_deliveries(v_from, p_at) AS d
    ),
    rates AS (
        SELECT 'false_positive_rate'::text AS metric, r.samples, round(r.rate, 4) AS rate, 6 AS ord, TRUE AS lower_is_better
        FROM resolved AS r
        UNION ALL
        SELECT 'provider_success_rate', d.samples, round(d.eventual_rate, 4), 7, FALSE FROM deliveries AS d
        UNION ALL
        SELECT 'provider_first_attempt_success_rate', d.samples, round(d.first_rate, 4), 8, FALSE FROM deliveries AS d
    )
    SELECT x.metric, x.unit, x.samples, x.mean, x.p50, x.p95, x.target, x.targets_applied, x.within_target,
           x.compliance_target, x.target_met
    FROM (
        SELECT t.ord, t.metric, t.unit, t.samples, t.mean, t.p50, t.p95, t.target, t.targets_applied, t.within_target,
               t.compliance_target,
               CASE WHEN t.samples = 0 OR t.target IS NULL THEN NULL ELSE t.within_target >= t.compliance_target END
               AS target_met
        FROM times AS t
        UNION ALL
        SELECT r.ord, r.metric, 'ratio', r.samples, r.rate, NULL, NULL,
               public.monitoring_sla_target(r.metric, NULL, NULL),
               format('%s for all', public.monitoring_sla_target(r.metric, NULL, NULL)), NULL, NULL,
               CASE
                   WHEN r.samples = 0 THEN NULL
                   WHEN r.lower_is_better THEN r.rate < public.monitoring_sla_target(r.metric, NULL, NULL)
                   ELSE r.rate >= public.monitoring_sla_target(r.metric, NULL, NULL)
               END
        FROM rates AS r
    ) AS x
    ORDER BY x.ord;
END
$$;
COMMENT ON FUNCTION monitoring_get_sla_summary(numeric, timestamptz) IS
'One row per SLA metric over alerts detected in (p_at - p_hours, p_at]: samples, mean, p50, p95 (seconds for
times, the ratio for rates), target: the default target; targets_applied: the targets that decided
within_target and for how many alerts each (a target per alert type, else per severity, else the default);
within_target: the share of alerts within the target that applies to each; the compliance expected, and
whether the target is met (NULL without samples). Times: mttd, delivery_time, mtta, mttr, mttr_after_ack. Rates: false_positive_rate
(of resolved alerts), provider_success_rate and provider_first_attempt_success_rate (of deliveries with an
outcome; skipped deliveries are not attempts).';
REVOKE ALL ON FUNCTION monitoring_get_sla_summary(numeric, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_get_sla_summary(numeric, timestamptz) TO monitoring_reader;

CREATE OR REPLACE FUNCTION monitoring_get_sla_breakdown(
    p_dimension text,
    p_hours numeric DEFAULT 24,
    p_at timestamptz DEFAULT now()
)
RETURNS TABLE (
    dimension_value text,
    metric text,
    samples bigint,
    mean numeric,
    p50 numeric,
    p95 numeric,
    within_target numeric
)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    v_from timestamptz := p_at - make_interval(secs => p_hours * 3600);
BEGIN
    IF p_dimension NOT IN ('alert_type', 'severity', 'provider') OR p_dimension IS NULL THEN
        RAISE EXCEPTION 'unknown dimension %', coalesce(quote_literal(p_dimension), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'one of alert_type, severity, provider';
    END IF;
    IF p_dimension = 'provider' THEN
        RETURN QUERY
        SELECT d.provider, m.metric, count(*),
               round(avg(CASE m.metric WHEN 'provider_success_rate' THEN d.succeeded
                                       ELSE d.first_attempt_succeeded END::integer)::numeric, 4),
               NULL::numeric, NULL::numeric, NULL::numeric
        FROM public._monitoring_sla_deliveries(v_from, p_at) AS d
        CROSS JOIN (VALUES ('provider_success_rate'), ('provider_first_attempt_success_rate')) AS m (metric)
        GROUP BY d.provider, m.metric
        ORDER BY 1, 2;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT CASE p_dimension WHEN 'severity' THEN d.severity ELSE d.alert_type END, d.metric, count(*),
           round(avg(d.seconds)::numeric, 3),
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY d.seconds)::numeric, 3),
           round(percentile_cont(0.95) WITHIN GROUP (ORDER BY d.seconds)::numeric, 3),
           round(avg((d.seconds <= d.target)::integer)::numeric, 4)
    FROM public._monitoring_sla_durations(v_from, p_at) AS d
    GROUP BY 1, 2
    UNION ALL
    SELECT CASE p_dimension WHEN 'severity' THEN s.severity ELSE s.alert_type END, 'false_positive_rate', count(*),
           round(avg(s.false_positive::integer)::numeric, 4), NULL, NULL, NULL
    FROM public.monitoring_sla_metrics AS s
    WHERE s.detected_at > v_from AND s.detected_at <= p_at AND s.resolved_at IS NOT NULL
    GROUP BY 1
    ORDER BY 1, 2;
END
$$;
COMMENT ON FUNCTION monitoring_get_sla_breakdown(text, numeric, timestamptz) IS
'The SLA summary broken down by alert_type, severity or provider (provider: success rates only), over alerts
detected in (p_at - p_hours, p_at].';
REVOKE ALL ON FUNCTION monitoring_get_sla_breakdown(text, numeric, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_get_sla_breakdown(text, numeric, timestamptz) TO monitoring_reader;
