-- pgalert 0008: alerts that are already over can be imported as history, without paging anyone.
--
-- An INSERT with status 'resolved' is a record of the past (from the tool pgalert replaces, or a backfill):
-- it keeps its own times, skips deduplication (an open alert with the same key is a different, current
-- problem), sends nothing to any provider, starts no escalation, and counts in the SLA figures for its window.
-- Any other INSERT is a current problem and pages as before, whatever its occurred_at.

CREATE FUNCTION _monitoring_alert_history_insert()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.alert_type IS NULL OR btrim(NEW.alert_type) = '' THEN
        RAISE EXCEPTION 'alert_type is required' USING ERRCODE = 'not_null_violation';
    END IF;
    IF NEW.title IS NULL OR btrim(NEW.title) = '' THEN
        RAISE EXCEPTION 'title is required' USING ERRCODE = 'not_null_violation';
    END IF;
    IF NEW.resolved_at IS NULL THEN
        RAISE EXCEPTION 'an alert inserted as resolved is history and needs resolved_at'
            USING ERRCODE = 'not_null_violation',
                  HINT = 'give created_at (detected), resolved_at and optionally occurred_at and acknowledged_at';
    END IF;
    IF NEW.resolved_at > now() THEN
        RAISE EXCEPTION 'resolved_at % is in the future; history is the past', NEW.resolved_at
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NEW.created_at > NEW.resolved_at OR NEW.acknowledged_at NOT BETWEEN NEW.created_at AND NEW.resolved_at THEN
        RAISE EXCEPTION 'history needs created_at <= acknowledged_at <= resolved_at (got %, %, %)',
            NEW.created_at, NEW.acknowledged_at, NEW.resolved_at
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'created_at is when the alert was detected; it defaults to now(), so give it';
    END IF;
    NEW.severity := public._monitoring_normalize_severity(NEW.severity);
    NEW.message := coalesce(NEW.message, '');
    NEW.source := coalesce(NEW.source, '');
    NEW.details := coalesce(NEW.details, '{}');
    NEW.dedup_key := coalesce(
        nullif(NEW.dedup_key, ''),
        NEW.alert_type || CASE WHEN NEW.source = '' THEN '' ELSE ':' || NEW.source END
    );
    NEW.occurred_at := least(NEW.occurred_at, NEW.created_at);
    NEW.occurrence_count := greatest(coalesce(NEW.occurrence_count, 1), 1);
    NEW.last_seen_at := least(greatest(coalesce(NEW.last_seen_at, NEW.created_at), NEW.created_at), NEW.resolved_at);
    NEW.resolved_by := coalesce(NEW.resolved_by, 'import');
    IF NEW.acknowledged_at IS NOT NULL THEN
        NEW.acknowledged_by := coalesce(NEW.acknowledged_by, 'import');
    END IF;
    RETURN NEW;
END
$$;

-- Every INSERT meets exactly one of the two: history, or a current problem that is deduplicated.
DROP TRIGGER monitoring_alerts_deduplicate ON monitoring_alerts;
CREATE TRIGGER monitoring_alerts_deduplicate
BEFORE INSERT ON monitoring_alerts
FOR EACH ROW WHEN (new.status IS DISTINCT FROM 'resolved')
EXECUTE FUNCTION _monitoring_alert_before_insert();
CREATE TRIGGER monitoring_alerts_history
BEFORE INSERT ON monitoring_alerts
FOR EACH ROW WHEN (new.status = 'resolved')
EXECUTE FUNCTION _monitoring_alert_history_insert();

COMMENT ON COLUMN monitoring_alerts.status IS
'open, acknowledged or resolved. An INSERT always opens a current alert, except one with status resolved: that
is history (with created_at, resolved_at and optionally occurred_at and acknowledged_at), stored as given,
counted in the SLA figures, and sent to no provider.';

-- The outbox, SLA row and escalation of new alerts: history gets its SLA row, with its own times, and
-- nothing else.
CREATE OR REPLACE FUNCTION _monitoring_alerts_after_insert()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_batch record;
BEGIN
    INSERT INTO public.monitoring_deliveries (alert_id, provider, action)
    SELECT a.id, r.provider, 'trigger'
    FROM new_alerts AS a
    CROSS JOIN LATERAL public.monitoring_route_providers(a.alert_type, a.severity) AS r (provider)
    WHERE a.status <> 'resolved'
    -- a later row of the same INSERT may have deduplicated into this one and enqueued already
    ON CONFLICT ON CONSTRAINT one_delivery_per_alert_provider_action DO NOTHING;

    -- handoff announcements are not incidents: kept out of the SLA figures
    INSERT INTO public.monitoring_sla_metrics (
        alert_id, alert_type, severity, occurred_at, detected_at,
        acknowledged_at, acknowledged_by, resolved_at, resolved_by, false_positive
    )
    SELECT a.id, a.alert_type, a.severity, a.occurred_at, a.created_at,
           a.acknowledged_at, a.acknowledged_by, a.resolved_at, a.resolved_by, a.false_positive
    FROM new_alerts AS a
    WHERE a.alert_type <> 'oncall_handoff';

    IF NOT EXISTS (
        SELECT FROM new_alerts AS a
        JOIN public.monitoring_escalation_assignments AS x
            ON x.alert_type = a.alert_type OR (x.alert_type IS NULL AND x.severity = a.severity)
        WHERE a.status <> 'resolved'
    ) THEN
        RETURN NULL;  -- most alerts escalate nowhere: skip the rest
    END IF;
    FOR v_batch IN
    WITH started AS (
        INSERT INTO public.monitoring_alert_escalations
            (alert_id, policy_name, steps, repeat_count, repeat_after, started_at, next_step_at)
        SELECT a.id, p.name, steps.list, p.repeat_count, p.repeat_after, a.created_at,
               a.created_at + (steps.list -> 0 ->> 'delay')::interval
        FROM new_alerts AS a
        CROSS JOIN LATERAL (
            SELECT x.policy_id FROM public.monitoring_escalation_assignments AS x
            WHERE x.alert_type = a.alert_type OR (x.alert_type IS NULL AND x.severity = a.severity)
            ORDER BY (x.alert_type IS NOT NULL) DESC, (x.severity IS NOT NULL) DESC
            LIMIT 1
        ) AS chosen
        JOIN public.monitoring_escalation_policies AS p ON p.id = chosen.policy_id
        CROSS JOIN LATERAL (
            SELECT jsonb_agg(jsonb_build_object('step', s.step, 'delay', s.delay, 'target_type', s.target_type,
                                                'schedule_id', s.schedule_id, 'person_id', s.person_id)
                             ORDER BY s.delay, s.step) AS list
            FROM public.monitoring_escalation_steps AS s WHERE s.policy_id = p.id
        ) AS steps
        WHERE a.alert_type NOT IN ('pgalert_unacknowledged', 'oncall_handoff') AND a.status <> 'resolved'
        RETURNING alert_id, started_at
    )
    SELECT st.started_at, array_agg(st.alert_id) AS ids FROM started AS st GROUP BY st.started_at
    LOOP
        -- a first step without delay goes out with the alert, not at the next cron minute; at the alert's own
        -- time, so a backfilled alert does not run its whole chain at once
        PERFORM public._monitoring_escalate(v_batch.started_at, v_batch.ids);
    END LOOP;
    RETURN NULL;
END
$$;

REVOKE EXECUTE ON FUNCTION _monitoring_alert_history_insert() FROM PUBLIC;
-- importing history is an admin's job: apps (monitoring_writer) cannot write status or lifecycle times
GRANT INSERT, SELECT (id) ON monitoring_alerts TO monitoring_admin;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0008', 'history_import');
