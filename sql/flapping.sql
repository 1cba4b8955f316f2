-- Flapping: an alert key that keeps opening and resolving is held open and notified once, then once more when it
-- settles.
--
-- The rules, decided here so that every dispatcher agrees:
-- - the state changes (opened, resolved) of alerts that a flap rule watches are recorded; an alert that opens
--   when its key changed state_changes times within the rule's window is marked flapping, and its trigger says so;
-- - while it flaps the alert stays open: a resolve by a rule or an HTTP client (via rule, api, alertmanager) is
--   held, not sent, and a repeat merges into the open alert as always, so the providers see one incident
--   instead of a stream of trigger/resolve pairs (hysteresis: it takes state_changes to start flapping, and
--   settle_after without any change to stop);
-- - when it settles it is resolved at the time of the resolve it held, if its last word was one; otherwise it is
--   notified once more, as still firing;
-- - a person's resolve (SQL, PagerDuty, Opsgenie, Slack) is never held: it resolves the alert and ends the episode.
--
-- Owns: monitoring_flapping, monitoring_flap_changes
-- (what settling does to the alert, a resolve or a last notification, is sql/alerts.sql's monitoring_settle_flapping.)

-- The flap rule that watches an alert: the lowest position among those whose matchers it meets.
CREATE OR REPLACE FUNCTION _monitoring_flap_rule_for(p_alert monitoring_alerts)
RETURNS SETOF monitoring_flap_rules
LANGUAGE sql STABLE
AS $$
    WITH k AS MATERIALIZED (SELECT * FROM public._monitoring_match_keys(p_alert))  -- once, not once per rule
    SELECT r.*
    FROM k
    CROSS JOIN public.monitoring_flap_rules AS r
    WHERE r.enabled
      AND NOT EXISTS (SELECT FROM public._monitoring_failed_matchers(p_alert, r.matchers, k.regex_misses))
    ORDER BY r.position, r.id
    LIMIT 1
$$;
REVOKE ALL ON FUNCTION _monitoring_flap_rule_for(monitoring_alerts) FROM PUBLIC;

-- New alerts: their opening is a state change of their key; one that makes the key flap starts an episode.
-- Called by the INSERT trigger when a flap rule exists.
CREATE OR REPLACE FUNCTION _monitoring_flap_on_open(p_alert_ids bigint[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO public.monitoring_flap_changes (dedup_key, alert_id, change, changed_at)
    SELECT a.dedup_key, a.id, 'opened', a.created_at
    FROM public.monitoring_alerts AS a
    WHERE a.id = ANY (p_alert_ids) AND EXISTS (SELECT FROM public._monitoring_flap_rule_for(a));

    INSERT INTO public.monitoring_flapping (alert_id, rule_id, dedup_key, started_at, state_changes, last_change_at)
    SELECT a.id, r.id, a.dedup_key, a.created_at, recent.changes, a.created_at
    FROM public.monitoring_alerts AS a
    CROSS JOIN LATERAL public._monitoring_flap_rule_for(a) AS r
    CROSS JOIN LATERAL (
        SELECT count(*)::integer AS changes
        FROM public.monitoring_flap_changes AS c
        WHERE c.dedup_key = a.dedup_key AND c.changed_at > a.created_at - r.within AND c.changed_at <= a.created_at
    ) AS recent
    WHERE a.id = ANY (p_alert_ids) AND recent.changes >= r.state_changes
    ON CONFLICT DO NOTHING;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_flap_on_open(bigint[]) FROM PUBLIC;

-- A repeat merged into a flapping alert whose last word was a resolve: the key fires again.
CREATE OR REPLACE FUNCTION _monitoring_flap_on_repeat(p_alert_id bigint, p_at timestamptz)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH fired AS (
        UPDATE public.monitoring_flapping
        SET state = 'firing', held_resolve = NULL, state_changes = state_changes + 1,
            last_change_at = greatest(last_change_at, p_at)
        WHERE alert_id = p_alert_id AND settled_at IS NULL AND state = 'resolved'
        RETURNING dedup_key
    )
    INSERT INTO public.monitoring_flap_changes (dedup_key, alert_id, change, changed_at)
    SELECT f.dedup_key, p_alert_id, 'opened', p_at FROM fired AS f
$$;
REVOKE ALL ON FUNCTION _monitoring_flap_on_repeat(bigint, timestamptz) FROM PUBLIC;

-- The resolve of a watched alert, before it happens. True: the alert flaps and an automatic resolve is held
-- (the alert stays open). False: the resolve goes ahead; a person's resolve ends the episode.
CREATE OR REPLACE FUNCTION _monitoring_flap_on_resolve(
    p_alert_id bigint, p_by text, p_note text, p_false_positive boolean, p_at timestamptz, p_via text
)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_episode public.monitoring_flapping;
    v_alert public.monitoring_alerts;
BEGIN
    -- locked by the caller (_monitoring_resolve); only an alert that is still unresolved can flap
    SELECT * INTO v_alert FROM public.monitoring_alerts WHERE id = p_alert_id AND status <> 'resolved';
    IF NOT FOUND THEN
        RETURN FALSE;
    END IF;
    IF NOT EXISTS (SELECT FROM public.monitoring_flap_changes AS c WHERE c.alert_id = v_alert.id) THEN
        RETURN FALSE;  -- no flap rule watches it
    END IF;
    INSERT INTO public.monitoring_flap_changes (dedup_key, alert_id, change, changed_at)
    SELECT v_alert.dedup_key, v_alert.id, 'resolved', p_at
    WHERE NOT EXISTS (SELECT FROM public.monitoring_flapping AS f
                      WHERE f.alert_id = v_alert.id AND f.settled_at IS NULL AND f.state = 'resolved');
    SELECT * INTO v_episode FROM public.monitoring_flapping AS f WHERE f.alert_id = v_alert.id AND f.settled_at IS NULL;
    IF NOT FOUND THEN
        RETURN FALSE;
    END IF;
    IF p_via IN ('rule', 'api', 'alertmanager') THEN
        UPDATE public.monitoring_flapping
        SET state = 'resolved',
            held_resolve = jsonb_build_object('by', p_by, 'note', p_note, 'false_positive', coalesce(p_false_positive, FALSE),
                                              'at', p_at, 'via', p_via),
            state_changes = state_changes + (state = 'firing')::integer,
            last_change_at = greatest(last_change_at, p_at)
        WHERE id = v_episode.id;
        RETURN TRUE;
    END IF;
    UPDATE public.monitoring_flapping
    SET settled_at = p_at, settle_reason = 'resolved by ' || p_by || ' via ' || p_via
    WHERE id = v_episode.id;
    RETURN FALSE;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_flap_on_resolve(bigint, text, text, boolean, timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_flap_on_resolve(bigint, text, text, boolean, timestamptz, text) TO monitoring_admin;

-- The episodes whose key has not changed state for their rule's settle_after are settled now, and returned with
-- what the alert's life does next: the resolve they held, or a last notification as still firing. SKIP LOCKED:
-- a run that overlaps another leaves that episode to it.
CREATE OR REPLACE FUNCTION _monitoring_settle_flaps(p_at timestamptz)
RETURNS TABLE (episode_id bigint, flapping_alert_id bigint, last_word text, held_resolve jsonb)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH due AS (
        SELECT f.id
        FROM public.monitoring_flapping AS f
        JOIN public.monitoring_flap_rules AS r ON r.id = f.rule_id
        WHERE f.settled_at IS NULL AND p_at >= f.last_change_at + r.settle_after
        ORDER BY f.id
        FOR UPDATE OF f SKIP LOCKED
    )
    UPDATE public.monitoring_flapping AS f
    SET settled_at = p_at,
        settle_reason = CASE f.state WHEN 'resolved' THEN 'quiet since the resolve it held' ELSE 'quiet, still firing' END
    FROM due
    WHERE f.id = due.id
    RETURNING f.id, f.alert_id, f.state, f.held_resolve
$$;
REVOKE ALL ON FUNCTION _monitoring_settle_flaps(timestamptz) FROM PUBLIC;

CREATE OR REPLACE TRIGGER check_matchers BEFORE INSERT OR UPDATE OF matchers ON monitoring_flap_rules
FOR EACH ROW EXECUTE FUNCTION _monitoring_check_hygiene_row();
COMMENT ON TRIGGER check_matchers ON monitoring_flap_rules IS
'Matchers are checked in the form they are evaluated in; a bad one is refused with the reason.';
