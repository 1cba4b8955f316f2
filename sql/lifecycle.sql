-- Lifecycle: acknowledge and resolve (each tells the providers that heard of the alert), and purging history.

CREATE OR REPLACE FUNCTION _monitoring_get_alert_for_update(p_alert_id bigint)
RETURNS monitoring_alerts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_alert public.monitoring_alerts;
BEGIN
    -- NO KEY UPDATE: inserts of deliveries that reference the alert (foreign key checks) need not wait for us
    SELECT * INTO v_alert FROM public.monitoring_alerts WHERE id = p_alert_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alert % does not exist', coalesce(p_alert_id::text, 'NULL')
            USING ERRCODE = 'no_data_found', HINT = 'pass the id of a row in monitoring_alerts';
    END IF;
    RETURN v_alert;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_get_alert_for_update(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_get_alert_for_update(bigint) TO monitoring_admin;

-- The acknowledge and resolve of every path (SQL, and `pgalert serve` for PagerDuty, Opsgenie, Slack and HTTP
-- clients): p_via says where it happened, and the provider it came from is not told again (no echo).
CREATE OR REPLACE FUNCTION _monitoring_acknowledge(
    p_alert_id bigint, p_by text, p_note text, p_at timestamptz, p_via text
)
RETURNS monitoring_alerts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_alert public.monitoring_alerts := public._monitoring_get_alert_for_update(p_alert_id);
BEGIN
    IF v_alert.status <> 'open' THEN
        RAISE NOTICE 'alert % is already %; nothing to acknowledge', p_alert_id, v_alert.status;
        RETURN v_alert;
    END IF;
    IF p_at < v_alert.created_at THEN
        RAISE EXCEPTION 'cannot acknowledge alert % at %, before it was created at %', p_alert_id, p_at, v_alert.created_at
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM set_config('pgalert.lifecycle', 'on', TRUE);  -- the status guard lets this UPDATE through
    UPDATE public.monitoring_alerts
    SET status = 'acknowledged', acknowledged_at = p_at, acknowledged_by = p_by, acknowledge_note = p_note,
        acknowledged_via = p_via
    WHERE id = p_alert_id
    RETURNING * INTO v_alert;
    PERFORM set_config('pgalert.lifecycle', 'off', TRUE);
    PERFORM public._monitoring_drop_held(p_alert_id, 'acknowledged', p_at);
    PERFORM public._monitoring_group_lifecycle(p_alert_id, 'acknowledge', p_by, p_note, p_at);
    PERFORM public._monitoring_enqueue(p_alert_id, 'acknowledge',
        jsonb_build_object('by', p_by, 'note', p_note, 'at', p_at, 'via', p_via));
    RETURN v_alert;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_acknowledge(bigint, text, text, timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_acknowledge(bigint, text, text, timestamptz, text) TO monitoring_admin;

CREATE OR REPLACE FUNCTION _monitoring_resolve(
    p_alert_id bigint, p_by text, p_note text, p_false_positive boolean, p_at timestamptz, p_via text
)
RETURNS monitoring_alerts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_alert public.monitoring_alerts := public._monitoring_get_alert_for_update(p_alert_id);
BEGIN
    IF v_alert.status = 'resolved' THEN
        RAISE NOTICE 'alert % is already resolved', p_alert_id;
        RETURN v_alert;
    END IF;
    IF p_at < greatest(v_alert.created_at, v_alert.acknowledged_at) THEN
        RAISE EXCEPTION 'cannot resolve alert % at %, before it was created or acknowledged', p_alert_id, p_at
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- a flapping alert stays open through automatic resolves (sql/flapping.sql)
    IF public._monitoring_flap_on_resolve(p_alert_id, p_by, p_note, p_false_positive, p_at, p_via) THEN
        RETURN v_alert;
    END IF;
    PERFORM set_config('pgalert.lifecycle', 'on', TRUE);  -- the status guard lets this UPDATE through
    UPDATE public.monitoring_alerts
    SET status = 'resolved', resolved_at = p_at, resolved_by = p_by, resolve_note = p_note,
        false_positive = coalesce(p_false_positive, false), resolved_via = p_via
    WHERE id = p_alert_id
    RETURNING * INTO v_alert;
    PERFORM set_config('pgalert.lifecycle', 'off', TRUE);
    PERFORM public._monitoring_drop_held(p_alert_id, 'resolved', p_at);
    PERFORM public._monitoring_group_lifecycle(p_alert_id, 'resolve', p_by, p_note, p_at);
    PERFORM public._monitoring_enqueue(p_alert_id, 'resolve', jsonb_build_object(
        'by', p_by, 'note', p_note, 'at', p_at, 'false_positive', coalesce(p_false_positive, false), 'via', p_via));
    -- this alert may have been inhibiting others: those still open and held by nothing else go out now
    IF EXISTS (SELECT FROM public.monitoring_notification_holds AS h
               WHERE h.released_at IS NULL AND h.reason = 'inhibition'
                 AND h.source_alert_id = p_alert_id) THEN
        PERFORM public.monitoring_release_holds(greatest(p_at, now()));
    END IF;
    RETURN v_alert;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_resolve(bigint, text, text, boolean, timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_resolve(bigint, text, text, boolean, timestamptz, text) TO monitoring_admin;

-- Back to open, when a provider says nobody owns it any more (PagerDuty's incident.unacknowledged) or the
-- problem is back (incident.reopened). The first acknowledgement stays on the row (MTTA counts to it) and the
-- escalation resumes where it paused, the paused time not counted. The follow-ups already sent become
-- history, so the next acknowledge or resolve reaches the providers again; those not yet sent are dropped.
CREATE OR REPLACE FUNCTION _monitoring_reopen(p_alert_id bigint, p_by text, p_at timestamptz, p_via text)
RETURNS monitoring_alerts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_alert public.monitoring_alerts := public._monitoring_get_alert_for_update(p_alert_id);
    v_paused_at timestamptz := coalesce(v_alert.resolved_at, v_alert.acknowledged_at);
BEGIN
    IF v_alert.status = 'open' THEN
        RETURN v_alert;
    END IF;
    IF v_alert.status = 'resolved' AND EXISTS (
        SELECT FROM public.monitoring_alerts AS a
        WHERE a.dedup_key = v_alert.dedup_key AND a.status <> 'resolved' AND a.id <> p_alert_id
    ) THEN
        RAISE EXCEPTION 'alert % cannot be reopened: alert % with the same dedup_key is open', p_alert_id,
            (SELECT a.id FROM public.monitoring_alerts AS a WHERE a.dedup_key = v_alert.dedup_key AND a.status <> 'resolved')
            USING ERRCODE = 'unique_violation';
    END IF;
    PERFORM set_config('pgalert.lifecycle', 'on', TRUE);
    UPDATE public.monitoring_alerts
    SET status = 'open', resolved_at = NULL, resolved_by = NULL, resolve_note = NULL, resolved_via = NULL,
        false_positive = false
    WHERE id = p_alert_id
    RETURNING * INTO v_alert;
    PERFORM set_config('pgalert.lifecycle', 'off', TRUE);
    UPDATE public.monitoring_deliveries
    SET status = CASE WHEN status = 'pending' THEN 'skipped' ELSE status END,
        completed_at = CASE WHEN status = 'pending' THEN now() ELSE completed_at END,
        last_error = CASE WHEN status = 'pending' THEN 'not sent: reopened via ' || p_via || ' by ' || p_by
                          ELSE last_error END,
        -- the delivery's own id keeps the archived row unique when two reopens carry the same provider time
        target = 'before reopen at ' || p_at || ' #' || id
    WHERE alert_id = p_alert_id AND action IN ('acknowledge', 'resolve') AND target = '';
    -- a reopened group takes members again, unless another group of its key opened meanwhile
    UPDATE public.monitoring_alert_groups AS g
    SET closed_at = NULL
    WHERE g.alert_id = p_alert_id AND g.closed_at IS NOT NULL
      AND NOT EXISTS (SELECT FROM public.monitoring_alert_groups AS other
                      WHERE other.rule_id = g.rule_id AND other.group_key = g.group_key AND other.closed_at IS NULL);
    -- finished by the acknowledge or resolve, or not yet (pg_cron finishes it when its next step falls due)
    UPDATE public.monitoring_alert_escalations AS e
    SET finished_at = NULL, finish_reason = NULL,
        started_at = e.started_at + greatest(p_at - coalesce(v_paused_at, p_at), interval '0')
    WHERE e.alert_id = p_alert_id AND coalesce(e.finish_reason, 'acknowledged') IN ('acknowledged', 'resolved');
    UPDATE public.monitoring_alert_escalations AS e
    SET next_step_at = public._monitoring_step_at(e, e.next_index)
    WHERE e.alert_id = p_alert_id AND e.finished_at IS NULL;
    RETURN v_alert;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_reopen(bigint, text, timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_reopen(bigint, text, timestamptz, text) TO monitoring_admin;

CREATE OR REPLACE FUNCTION monitoring_acknowledge_alert(
    p_alert_id bigint,
    p_by text DEFAULT session_user,
    p_note text DEFAULT NULL,
    p_at timestamptz DEFAULT now()
)
RETURNS monitoring_alerts
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM public._monitoring_acknowledge(p_alert_id, p_by, p_note, p_at, 'sql')
$$;
COMMENT ON FUNCTION monitoring_acknowledge_alert(bigint, text, text, timestamptz) IS
'Someone is on it: status acknowledged, and the providers that were paged are told (PagerDuty acknowledge,
Opsgenie acknowledge, a Slack follow-up). Acknowledging an alert that is not open changes nothing.';
REVOKE ALL ON FUNCTION monitoring_acknowledge_alert(bigint, text, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_acknowledge_alert(bigint, text, text, timestamptz) TO monitoring_admin;

CREATE OR REPLACE FUNCTION monitoring_resolve_alert(
    p_alert_id bigint,
    p_by text DEFAULT session_user,
    p_note text DEFAULT NULL,
    p_false_positive boolean DEFAULT FALSE,
    p_at timestamptz DEFAULT now()
)
RETURNS monitoring_alerts
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM public._monitoring_resolve(p_alert_id, p_by, p_note, p_false_positive, p_at, 'sql')
$$;
COMMENT ON FUNCTION monitoring_resolve_alert(bigint, text, text, boolean, timestamptz) IS
'It is over: status resolved (false_positive marks an alert that should not have fired), and the providers are
told (PagerDuty resolve, Opsgenie close, a Slack follow-up). The next INSERT with the same dedup_key opens a new alert.';
REVOKE ALL ON FUNCTION monitoring_resolve_alert(bigint, text, text, boolean, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_resolve_alert(bigint, text, text, boolean, timestamptz) TO monitoring_admin;

CREATE OR REPLACE FUNCTION monitoring_purge_history(p_keep interval DEFAULT '90 days', p_at timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH purged AS (
        DELETE FROM public.monitoring_alerts
        WHERE status = 'resolved' AND resolved_at < p_at - p_keep
        RETURNING 1
    ),
    -- webhooks about incidents pgalert did not know (those of purged alerts go with them)
    purged_unmatched AS (
        DELETE FROM public.monitoring_inbound_actions
        WHERE alert_id IS NULL AND received_at < p_at - p_keep
    )
    SELECT count(*) FROM purged
$$;
COMMENT ON FUNCTION monitoring_purge_history(interval, timestamptz) IS
'Delete alerts resolved more than p_keep ago, with their deliveries and attempts; returns how many alerts.
Open and acknowledged alerts are never purged.';
REVOKE ALL ON FUNCTION monitoring_purge_history(interval, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_purge_history(interval, timestamptz) TO monitoring_admin;
