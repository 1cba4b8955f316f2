-- Notification hygiene: silences, maintenance windows and inhibition hold an alert's notifications.
--
-- The rules, decided here so that every dispatcher agrees:
-- - an alert is always stored, deduplicated and counted; what a hold stops is its trigger deliveries (status
--   held) and its escalation, from its INSERT (at the alert's created_at);
-- - a held trigger becomes pending when nothing holds the alert any more and the alert is still open: the
--   cause ended (monitoring_release_holds, every minute and whenever a silence is expired or an inhibiting
--   alert resolves), and the escalation starts then;
-- - an alert acknowledged or resolved while held is never notified: its held triggers are skipped, and no
--   provider that never heard of it is told of its end;
-- - a resolve or acknowledge of an alert whose trigger went out is never held, whatever silences say: no
--   provider is left with an incident pgalert closed (the gap of alertmanager#3664);
-- - every hold and release is a row of monitoring_notification_holds.

-- One field of an alert, as matchers name it. A field the alert lacks is '' (Alertmanager: a missing label is
-- the empty string).
CREATE OR REPLACE FUNCTION _monitoring_alert_field(p_alert monitoring_alerts, p_field text)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT coalesce(CASE
        WHEN p_field = 'alert_type' THEN p_alert.alert_type
        WHEN p_field = 'severity' THEN p_alert.severity
        WHEN p_field = 'source' THEN p_alert.source
        WHEN p_field = 'dedup_key' THEN p_alert.dedup_key
        WHEN p_field LIKE 'labels.%' THEN p_alert.details -> 'labels' ->> substr(p_field, 8)
        WHEN p_field LIKE 'details.%' THEN p_alert.details ->> substr(p_field, 9)
    END, '')
$$;
REVOKE ALL ON FUNCTION _monitoring_alert_field(monitoring_alerts, text) FROM PUBLIC;

-- The matchers an alert fails; it matches when there is none: NOT EXISTS (SELECT FROM
-- _monitoring_failed_matchers(alert, matchers)). A set-returning SQL function without SET is inlined into the
-- query that uses it, so a hundred silences cost one query, not a hundred function calls (measured: 35 us a
-- call as a boolean function, 6 us inlined).
CREATE OR REPLACE FUNCTION _monitoring_failed_matchers(p_alert monitoring_alerts, p_matchers jsonb)
RETURNS SETOF jsonb
LANGUAGE sql IMMUTABLE
AS $$
    SELECT m.matcher
    FROM jsonb_array_elements(p_matchers) AS m (matcher)
    CROSS JOIN LATERAL (SELECT public._monitoring_alert_field(p_alert, m.matcher ->> 'field') AS value) AS f
    WHERE NOT CASE m.matcher ->> 'op'
        WHEN '=' THEN f.value = m.matcher ->> 'value'
        WHEN '!=' THEN f.value <> m.matcher ->> 'value'
        WHEN '=~' THEN f.value ~ ('^(?:' || (m.matcher ->> 'value') || ')$')  -- anchored, as Alertmanager's
        WHEN '!~' THEN f.value !~ ('^(?:' || (m.matcher ->> 'value') || ')$')
    END
$$;
REVOKE ALL ON FUNCTION _monitoring_failed_matchers(monitoring_alerts, jsonb) FROM PUBLIC;

-- Matchers are checked when they are saved, so matching never fails on a bad regex at INSERT time.
CREATE OR REPLACE FUNCTION _monitoring_check_matchers(p_matchers jsonb, p_what text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_matcher jsonb;
BEGIN
    IF jsonb_typeof(p_matchers) IS DISTINCT FROM 'array' OR jsonb_array_length(p_matchers) = 0 THEN
        RAISE EXCEPTION '% must be a non-empty JSON array of matchers', p_what
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'e.g. [{"field": "alert_type", "op": "=", "value": "deploy_check"}]';
    END IF;
    FOR v_matcher IN SELECT value FROM jsonb_array_elements(p_matchers) LOOP
        IF jsonb_typeof(v_matcher) IS DISTINCT FROM 'object'
           OR coalesce(v_matcher ->> 'field', '') !~ '^(alert_type|severity|source|dedup_key|(labels|details)\.[A-Za-z0-9_.:-]{1,100})$'
           OR coalesce(v_matcher ->> 'op', '') NOT IN ('=', '!=', '=~', '!~')
           OR jsonb_typeof(v_matcher -> 'value') IS DISTINCT FROM 'string' THEN
            RAISE EXCEPTION '% has a matcher that is not {field, op, value}: %', p_what, left(v_matcher::text, 200)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'field: alert_type, severity, source, dedup_key, labels.NAME or details.NAME; '
                             'op: =, !=, =~ (regex) or !~';
        END IF;
        IF v_matcher ->> 'op' IN ('=~', '!~') THEN
            BEGIN
                PERFORM '' ~ (v_matcher ->> 'value');
            EXCEPTION WHEN invalid_regular_expression THEN
                RAISE EXCEPTION '% has a regex that does not compile: %', p_what, v_matcher ->> 'value'
                    USING ERRCODE = 'invalid_regular_expression';
            END;
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_check_matchers(jsonb, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION _monitoring_check_hygiene_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME = 'monitoring_inhibit_rules' THEN
        PERFORM public._monitoring_check_matchers(NEW.source_matchers, 'source_matchers');
        PERFORM public._monitoring_check_matchers(NEW.target_matchers, 'target_matchers');
    ELSE
        PERFORM public._monitoring_check_matchers(NEW.matchers, 'matchers');
    END IF;
    IF TG_TABLE_NAME = 'monitoring_maintenance_windows' THEN
        PERFORM now() AT TIME ZONE NEW.time_zone;  -- an unknown zone is refused here, by name
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_check_hygiene_row() FROM PUBLIC;

CREATE OR REPLACE TRIGGER check_matchers BEFORE INSERT OR UPDATE ON monitoring_silences
FOR EACH ROW EXECUTE FUNCTION _monitoring_check_hygiene_row();
CREATE OR REPLACE TRIGGER check_matchers BEFORE INSERT OR UPDATE ON monitoring_maintenance_windows
FOR EACH ROW EXECUTE FUNCTION _monitoring_check_hygiene_row();
CREATE OR REPLACE TRIGGER check_matchers BEFORE INSERT OR UPDATE ON monitoring_inhibit_rules
FOR EACH ROW EXECUTE FUNCTION _monitoring_check_hygiene_row();

-- A window's times are wall-clock times in its zone: a window every Sunday 02:00-04:00 in Sao Paulo starts at
-- 02:00 there in every season. Each of the last eight local days may have opened it (a window lasts a week
-- at most).
CREATE OR REPLACE FUNCTION _monitoring_window_is_open(p_window monitoring_maintenance_windows, p_at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT p_window.enabled AND CASE
        WHEN p_window.starts_at IS NOT NULL THEN p_at >= p_window.starts_at AND p_at < p_window.ends_at
        ELSE EXISTS (
            SELECT FROM generate_series(0, 7) AS back (days)
            CROSS JOIN LATERAL (
                SELECT ((p_at AT TIME ZONE p_window.time_zone)::date - back.days) + p_window.start_time AS local_start
            ) AS day
            WHERE extract(ISODOW FROM day.local_start)::integer = ANY (p_window.days_of_week)
              AND p_at >= day.local_start AT TIME ZONE p_window.time_zone
              AND p_at < (day.local_start + p_window.duration) AT TIME ZONE p_window.time_zone
        )
    END
$$;
REVOKE ALL ON FUNCTION _monitoring_window_is_open(monitoring_maintenance_windows, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_window_is_open(monitoring_maintenance_windows, timestamptz) TO monitoring_reader;

-- Could anything hold a notification of an alert raised at p_at or later? Most INSERTs meet nothing, and pay
-- for this one probe.
-- plpgsql, not sql: a sql function that is not inlined (this one has sub-selects) plans its body at every call,
-- and this is asked at every INSERT; measured 0.21 ms a call as sql.
CREATE OR REPLACE FUNCTION _monitoring_hygiene_in_force(p_at timestamptz)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN EXISTS (SELECT FROM public.monitoring_silences AS s WHERE s.expired_at IS NULL AND s.ends_at > p_at)
        OR EXISTS (SELECT FROM public.monitoring_maintenance_windows AS w WHERE w.enabled)
        OR EXISTS (SELECT FROM public.monitoring_inhibit_rules AS r WHERE r.enabled);
END
$$;
REVOKE ALL ON FUNCTION _monitoring_hygiene_in_force(timestamptz) FROM PUBLIC;

-- What holds an alert's notifications at p_at: one row per cause. An inhibition is held per source alert,
-- so it lasts while any of them is unresolved.
CREATE OR REPLACE FUNCTION _monitoring_holds_for(p_alert monitoring_alerts, p_at timestamptz)
RETURNS TABLE (reason text, held_by text)
LANGUAGE sql STABLE
AS $$
    SELECT 'silence', 'silence ' || s.id
    FROM public.monitoring_silences AS s
    WHERE s.expired_at IS NULL AND s.starts_at <= p_at AND s.ends_at > p_at
      -- one equality first (migration 0021): most silences fail on it, before their matchers are unpacked
      AND (s.equals_field IS NULL OR public._monitoring_alert_field(p_alert, s.equals_field) = s.equals_value)
      AND NOT EXISTS (SELECT FROM public._monitoring_failed_matchers(p_alert, s.matchers))
    UNION ALL
    SELECT 'maintenance', 'maintenance window ' || w.name
    FROM public.monitoring_maintenance_windows AS w
    WHERE public._monitoring_window_is_open(w, p_at)
      AND NOT EXISTS (SELECT FROM public._monitoring_failed_matchers(p_alert, w.matchers))
    UNION ALL
    SELECT 'inhibition', 'inhibit rule ' || pair.rule_name || ': alert ' || (pair.source).id
    FROM (
        -- first the rules that have an unresolved source at all (usually none: one index probe per rule), and
        -- only then the matchers; OFFSET 0 keeps the planner from testing the target's matchers first
        SELECT r.name AS rule_name, r.source_matchers, r.target_matchers, r.equal, src.alert AS source
        FROM public.monitoring_inhibit_rules AS r
        CROSS JOIN LATERAL (
            -- a rule that names its source's alert_type finds the sources by index; others look at every open alert
            SELECT a FROM public.monitoring_alerts AS a
            WHERE r.source_alert_type IS NOT NULL AND a.alert_type = r.source_alert_type AND a.status <> 'resolved'
            UNION ALL
            SELECT a FROM public.monitoring_alerts AS a
            WHERE r.source_alert_type IS NULL AND a.status <> 'resolved'
        ) AS src (alert)
        WHERE r.enabled AND (src.alert).id <> p_alert.id
        OFFSET 0
    ) AS pair
    WHERE NOT EXISTS (SELECT FROM public._monitoring_failed_matchers(p_alert, pair.target_matchers))
      AND NOT EXISTS (SELECT FROM public._monitoring_failed_matchers(pair.source, pair.source_matchers))
      -- an alert on both sides cannot be inhibited by another on both sides (nor by itself)
      AND NOT (NOT EXISTS (SELECT FROM public._monitoring_failed_matchers(p_alert, pair.source_matchers))
               AND NOT EXISTS (SELECT FROM public._monitoring_failed_matchers(pair.source, pair.target_matchers)))
      AND NOT EXISTS (
          SELECT FROM unnest(pair.equal) AS e (field)
          WHERE public._monitoring_alert_field(p_alert, e.field) <> public._monitoring_alert_field(pair.source, e.field)
      )
$$;
REVOKE ALL ON FUNCTION _monitoring_holds_for(monitoring_alerts, timestamptz) FROM PUBLIC;

-- The alert was acknowledged or resolved while held: nobody is to be paged for it any more.
CREATE OR REPLACE FUNCTION _monitoring_drop_held(p_alert_id bigint, p_why text, p_at timestamptz)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.monitoring_deliveries
    SET status = 'skipped', completed_at = now(), last_error = 'not sent: ' || p_why || ' while its notification was held'
    WHERE alert_id = p_alert_id AND status = 'held';
    UPDATE public.monitoring_notification_holds
    SET released_at = p_at, release_reason = p_why
    WHERE alert_id = p_alert_id AND released_at IS NULL;
$$;
REVOKE ALL ON FUNCTION _monitoring_drop_held(bigint, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_drop_held(bigint, text, timestamptz) TO monitoring_admin;

CREATE OR REPLACE FUNCTION monitoring_release_holds(p_at timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_released bigint[];
BEGIN
    -- the causes that have ended (a concurrent run waits on the row, then finds it released: no double release)
    UPDATE public.monitoring_notification_holds AS h
    SET released_at = p_at, release_reason = 'ended'
    FROM public.monitoring_alerts AS a
    WHERE a.id = h.alert_id AND h.released_at IS NULL
      AND NOT EXISTS (SELECT FROM public._monitoring_holds_for(a, p_at) AS still
                      WHERE still.reason = h.reason AND still.held_by = h.held_by);

    -- alerts that nothing holds any more, still open: their triggers go out now
    WITH released AS (
        UPDATE public.monitoring_deliveries AS d
        SET status = 'pending', next_attempt_at = now()
        FROM public.monitoring_alerts AS a
        WHERE d.status = 'held' AND a.id = d.alert_id AND a.status = 'open'
          AND NOT EXISTS (SELECT FROM public.monitoring_notification_holds AS h
                          WHERE h.alert_id = d.alert_id AND h.released_at IS NULL)
        RETURNING d.alert_id
    )
    SELECT array_agg(DISTINCT r.alert_id) INTO v_released FROM released AS r;
    IF v_released IS NULL THEN
        RETURN 0;
    END IF;
    -- their escalation starts now, as if they had just been raised
    UPDATE public.monitoring_alert_escalations AS e
    SET started_at = p_at, next_step_at = p_at + (e.steps -> 0 ->> 'delay')::interval
    WHERE e.alert_id = ANY (v_released) AND e.finished_at IS NULL AND e.next_index = 0;
    PERFORM public._monitoring_escalate(p_at, v_released);
    PERFORM pg_notify('monitoring_deliveries', '');
    RETURN cardinality(v_released);
END
$$;
COMMENT ON FUNCTION monitoring_release_holds(timestamptz) IS
'Notify the held alerts whose silences, maintenance windows and inhibiting alerts have all ended by p_at and that
are still open (their escalation starts then); returns how many alerts. pg_cron runs it every minute; expiring a
silence and resolving an inhibiting alert run it at once.';
REVOKE ALL ON FUNCTION monitoring_release_holds(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_release_holds(timestamptz) TO monitoring_admin;

CREATE OR REPLACE FUNCTION monitoring_create_silence(
    p_matchers jsonb,
    p_ends_at timestamptz,
    p_comment text,
    p_starts_at timestamptz DEFAULT now(),
    p_created_by text DEFAULT session_user
)
RETURNS bigint
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.monitoring_silences (matchers, starts_at, ends_at, comment, created_by)
    VALUES (p_matchers, p_starts_at, p_ends_at, p_comment, p_created_by)
    RETURNING id
$$;
COMMENT ON FUNCTION monitoring_create_silence(jsonb, timestamptz, text, timestamptz, text) IS
'Hold the notifications of alerts matching every matcher that are raised between p_starts_at and p_ends_at;
returns the silence id. E.g. SELECT monitoring_create_silence(''[{"field": "alert_type", "op": "=", "value":
"api_response_degradation"}]'', now() + interval ''2 hours'', ''deploy of api 4.2'').';
REVOKE ALL ON FUNCTION monitoring_create_silence(jsonb, timestamptz, text, timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_create_silence(jsonb, timestamptz, text, timestamptz, text) TO monitoring_admin;

CREATE OR REPLACE FUNCTION monitoring_expire_silence(p_silence_id bigint, p_by text DEFAULT session_user)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE public.monitoring_silences
    SET expired_at = now(), expired_by = p_by
    WHERE id = p_silence_id AND expired_at IS NULL AND ends_at > now();
    IF NOT FOUND THEN
        RETURN FALSE;
    END IF;
    PERFORM public.monitoring_release_holds(now());
    RETURN TRUE;
END
$$;
COMMENT ON FUNCTION monitoring_expire_silence(bigint, text) IS
'End a silence now (it is kept, for history); the alerts it held that are still open and held by nothing else
are notified at once. False when the silence had already ended.';
REVOKE ALL ON FUNCTION monitoring_expire_silence(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_expire_silence(bigint, text) TO monitoring_admin;
