-- Grouping: a storm becomes one notification per provider.
--
-- The rules, decided here so that every dispatcher agrees:
-- - a new alert that matches a group rule, and that nothing holds, joins the open group of its rule and key
--   (or opens it) and is never notified alone; it is stored, deduplicated and counted as always;
-- - the group is an alert of its own, so it has one provider key: one PagerDuty incident, one Opsgenie alert,
--   one Slack message. It is routed as its first member, at the highest severity of its members, and
--   escalates as such an alert does;
-- - its first notification waits group_wait; when members joined since it was last notified it is sent again
--   group_interval after that, and every repeat_interval while nobody acknowledged it (pg_cron, every minute);
--   each notification says how many alerts it holds and names the latest, as of when it is sent;
-- - acknowledging or resolving the group does the same to its open members; the group resolves when its last
--   member does, and a group that resolved before it was first sent is never sent.
--
-- Owns: monitoring_alert_groups, monitoring_alert_group_members
-- (the group's own alert row changes through sql/alerts.sql, its deliveries through sql/outbox.sql.)

-- The group key of an alert under a rule: its values of the rule's group_by fields.
CREATE OR REPLACE FUNCTION _monitoring_group_labels(p_alert monitoring_alerts, p_group_by text[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$
    SELECT coalesce(jsonb_object_agg(f.field, public._monitoring_alert_field(p_alert, f.field)), '{}')
    FROM unnest(p_group_by) AS f (field)
$$;
REVOKE ALL ON FUNCTION _monitoring_group_labels(monitoring_alerts, text[]) FROM PUBLIC;

-- New alerts join their groups. Called by the INSERT trigger with the ids of the new alerts that nothing holds;
-- groups are taken in key order, so two writers of overlapping storms wait for each other, never deadlock.
-- Returns the open groups that a more severe member raises (sql/alerts.sql raises them).
CREATE OR REPLACE FUNCTION _monitoring_group_new_alerts(p_alert_ids bigint[])
RETURNS TABLE (raised_group_id bigint, raised_severity text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_batch record;
    v_group public.monitoring_alert_groups;
    v_group_alert public.monitoring_alerts;
    v_group_id bigint;
    v_rank constant text[] := ARRAY['info', 'warning', 'critical'];
BEGIN
    FOR v_batch IN
        SELECT r.id AS rule_id, r.name AS rule_name, r.group_wait, k.labels, k.labels::text AS group_key,
               array_agg(a.id ORDER BY a.id) AS ids,
               (array_agg(a ORDER BY a.created_at, a.id))[1] AS first_alert,
               v_rank[max(array_position(v_rank, a.severity))] AS severity,
               min(a.created_at) AS first_at, max(a.created_at) AS last_at
        FROM public.monitoring_alerts AS a
        CROSS JOIN LATERAL public._monitoring_match_keys(a) AS mk
        CROSS JOIN LATERAL (
            SELECT g.* FROM public.monitoring_group_rules AS g
            WHERE g.enabled
              AND NOT EXISTS (SELECT FROM public._monitoring_failed_matchers(a, g.matchers, mk.regex_misses))
            ORDER BY g.position, g.id
            LIMIT 1
        ) AS r
        CROSS JOIN LATERAL (SELECT public._monitoring_group_labels(a, r.group_by) AS labels) AS k
        WHERE a.id = ANY (p_alert_ids)
        GROUP BY r.id, r.name, r.group_wait, k.labels
        ORDER BY r.id, k.labels::text
    LOOP
        PERFORM pg_advisory_xact_lock(1886414690, hashtext(v_batch.rule_id || ':' || v_batch.group_key));
        SELECT * INTO v_group
        FROM public.monitoring_alert_groups AS g
        WHERE g.rule_id = v_batch.rule_id AND g.group_key = v_batch.group_key AND g.closed_at IS NULL
        FOR UPDATE;
        IF NOT FOUND THEN
            -- the group row comes first, so the group alert's own INSERT trigger knows it is a group (and does
            -- not group it, count it in the SLA, or page for it before group_wait)
            v_group_id := nextval(pg_get_serial_sequence('public.monitoring_alerts', 'id'));
            INSERT INTO public.monitoring_alert_groups
                (alert_id, rule_id, group_key, group_labels, opened_at, last_joined_at, last_notified_at)
            VALUES (v_group_id, v_batch.rule_id, v_batch.group_key, v_batch.labels, v_batch.first_at,
                    v_batch.last_at, v_batch.first_at + v_batch.group_wait);
            INSERT INTO public.monitoring_alerts
                (id, alert_type, severity, title, message, source, dedup_key, details, occurred_at, created_at)
            OVERRIDING SYSTEM VALUE
            SELECT v_group_id, (v_batch.first_alert).alert_type, v_batch.severity, (v_batch.first_alert).title,
                   (v_batch.first_alert).message, 'pgalert', 'pgalert-group:' || v_group_id,
                   jsonb_build_object(
                       'labels', coalesce((
                           SELECT jsonb_object_agg(substr(l.key, 8), l.value)
                           FROM jsonb_each(v_batch.labels) AS l WHERE l.key LIKE 'labels.%'
                       ), '{}'),
                       'pgalert_group', jsonb_build_object('rule', v_batch.rule_name, 'group_by', v_batch.labels)
                   ),
                   (v_batch.first_alert).occurred_at, v_batch.first_at;
            PERFORM public._monitoring_defer_trigger(v_group_id, v_batch.first_at + v_batch.group_wait, FALSE);
        ELSE
            v_group_id := v_group.alert_id;
            SELECT * INTO v_group_alert FROM public.monitoring_alerts AS a WHERE a.id = v_group_id;
            -- a more severe member raises the group
            IF array_position(v_rank, v_batch.severity) > array_position(v_rank, v_group_alert.severity) THEN
                raised_group_id := v_group_id;
                raised_severity := v_batch.severity;
                RETURN NEXT;
            END IF;
        END IF;
        INSERT INTO public.monitoring_alert_group_members (alert_id, group_alert_id, joined_at)
        SELECT a.id, v_group_id, a.created_at
        FROM public.monitoring_alerts AS a
        WHERE a.id = ANY (v_batch.ids);
        UPDATE public.monitoring_alert_groups AS g
        SET member_count = g.member_count + cardinality(v_batch.ids),
            last_joined_at = greatest(g.last_joined_at, v_batch.last_at)
        WHERE g.alert_id = v_group_id;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_group_new_alerts(bigint[]) FROM PUBLIC;

-- The group alert an alert is a member of (NULL when it is no group's member).
CREATE OR REPLACE FUNCTION _monitoring_group_alert_of(p_alert_id bigint)
RETURNS monitoring_alerts
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.*
    FROM public.monitoring_alert_group_members AS m
    JOIN public.monitoring_alerts AS a ON a.id = m.group_alert_id
    WHERE m.alert_id = p_alert_id
$$;
REVOKE ALL ON FUNCTION _monitoring_group_alert_of(bigint) FROM PUBLIC;

-- When a group's first notification may go out: group_wait after it opened.
CREATE OR REPLACE FUNCTION _monitoring_group_wait_until(p_group_alert_id bigint)
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT g.opened_at + r.group_wait
    FROM public.monitoring_alert_groups AS g
    JOIN public.monitoring_group_rules AS r ON r.id = g.rule_id
    WHERE g.alert_id = p_group_alert_id
$$;
REVOKE ALL ON FUNCTION _monitoring_group_wait_until(bigint) FROM PUBLIC;

-- The lifecycle's part (sql/alerts.sql): after an alert was acknowledged or resolved, and before the providers
-- are told (so a group never sent is not told of its end either), the group side of it is written here and what
-- follows is returned for the lifecycle to do, with the same action: a group's acknowledge or resolve passes on
-- to its open members (via 'group', as the responder); a member's resolve resolves its group when it was the
-- last one open.
CREATE OR REPLACE FUNCTION _monitoring_group_follow_ups(
    p_alert_id bigint, p_action text, p_by text, p_note text, p_at timestamptz
)
RETURNS TABLE (follow_alert_id bigint, responder text, note text, false_positive boolean, acted_at timestamptz)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_alert public.monitoring_alerts;
    v_group_id bigint;
BEGIN
    SELECT * INTO v_alert FROM public.monitoring_alerts AS a WHERE a.id = p_alert_id;
    -- only what the lifecycle just did is passed on: an acknowledge of an acknowledged or resolved alert, a
    -- resolve of a resolved one
    IF NOT FOUND OR (p_action = 'resolve') <> (v_alert.status = 'resolved')
       OR (p_action = 'acknowledge') <> (v_alert.status = 'acknowledged') THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM public.monitoring_alert_groups AS g WHERE g.alert_id = v_alert.id) THEN
        -- acknowledged or resolved before its first notification went out: nobody is to be paged for it
        PERFORM public._monitoring_skip_triggers(v_alert.id, 'unsent',
                                                 'the group was ' || p_action || 'd before it was notified');
        IF p_action = 'resolve' THEN
            UPDATE public.monitoring_alert_groups AS g SET closed_at = p_at WHERE g.alert_id = v_alert.id;
        END IF;
        RETURN QUERY
            SELECT a.id, p_by,
                   coalesce(p_note, CASE WHEN p_action = 'resolve' THEN 'resolved with its group'
                                         ELSE 'acknowledged with its group' END),
                   v_alert.false_positive,
                   greatest(p_at, a.created_at, CASE WHEN p_action = 'resolve' THEN a.acknowledged_at END)
            FROM public.monitoring_alert_group_members AS m
            JOIN public.monitoring_alerts AS a ON a.id = m.alert_id
            WHERE m.group_alert_id = v_alert.id
              AND a.status = ANY (CASE WHEN p_action = 'resolve' THEN ARRAY['open', 'acknowledged'] ELSE ARRAY['open'] END)
            ORDER BY a.id;
        RETURN;
    END IF;
    IF p_action <> 'resolve' THEN
        RETURN;
    END IF;
    SELECT m.group_alert_id INTO v_group_id
    FROM public.monitoring_alert_group_members AS m
    JOIN public.monitoring_alerts AS g ON g.id = m.group_alert_id
    WHERE m.alert_id = v_alert.id AND g.status <> 'resolved';
    IF v_group_id IS NOT NULL AND NOT EXISTS (
        SELECT FROM public.monitoring_alert_group_members AS m
        JOIN public.monitoring_alerts AS a ON a.id = m.alert_id
        WHERE m.group_alert_id = v_group_id AND a.status <> 'resolved'
    ) THEN
        RETURN QUERY
            SELECT v_group_id, 'pgalert'::text, 'every alert of the group resolved'::text, FALSE, greatest(p_at, a.acknowledged_at)
            FROM public.monitoring_alerts AS a WHERE a.id = v_group_id;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_group_follow_ups(bigint, text, text, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_group_follow_ups(bigint, text, text, text, timestamptz) TO monitoring_admin;

-- A reopened group takes members again, unless another group of its key opened meanwhile.
CREATE OR REPLACE FUNCTION _monitoring_reopen_group(p_alert_id bigint)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.monitoring_alert_groups AS g
    SET closed_at = NULL
    WHERE g.alert_id = p_alert_id AND g.closed_at IS NOT NULL
      AND NOT EXISTS (SELECT FROM public.monitoring_alert_groups AS other
                      WHERE other.rule_id = g.rule_id AND other.group_key = g.group_key AND other.closed_at IS NULL)
$$;
REVOKE ALL ON FUNCTION _monitoring_reopen_group(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_reopen_group(bigint) TO monitoring_admin;

CREATE OR REPLACE FUNCTION monitoring_flush_groups(p_at timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sent integer;
BEGIN
    -- SKIP LOCKED: a run that overlaps another (or a writer adding members) leaves that group to the next minute
    WITH due AS (
        SELECT g.alert_id
        FROM public.monitoring_alert_groups AS g
        JOIN public.monitoring_group_rules AS r ON r.id = g.rule_id
        JOIN public.monitoring_alerts AS a ON a.id = g.alert_id
        WHERE g.closed_at IS NULL AND a.status <> 'resolved'
          AND (
              (g.last_joined_at > g.last_notified_at AND p_at >= g.last_notified_at + r.group_interval)
              OR (a.status = 'open' AND p_at >= g.last_notified_at + r.repeat_interval)
          )
        FOR UPDATE OF g SKIP LOCKED
    ),
    flushed AS (
        UPDATE public.monitoring_alert_groups AS g
        SET last_notified_at = p_at, notifications = g.notifications + 1
        FROM due
        WHERE g.alert_id = due.alert_id
        RETURNING g.alert_id, g.notifications
    )
    -- again to the providers that heard of the group (PagerDuty and Opsgenie update their incident; Slack posts
    -- the new count)
    SELECT public._monitoring_notify_again(array_agg(f.alert_id), array_agg('group notification ' || f.notifications))
    INTO v_sent
    FROM flushed AS f;
    RETURN v_sent;
END
$$;
COMMENT ON FUNCTION monitoring_flush_groups(timestamptz) IS
'Send groups again: those that members joined since their last notification, group_interval after it, and
those still unacknowledged, every repeat_interval; to the providers that heard of the group. Returns how many
deliveries it queued. pg_cron runs it every minute.';
REVOKE ALL ON FUNCTION monitoring_flush_groups(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_flush_groups(timestamptz) TO monitoring_admin;

CREATE OR REPLACE TRIGGER check_matchers BEFORE INSERT OR UPDATE OF matchers ON monitoring_group_rules
FOR EACH ROW EXECUTE FUNCTION _monitoring_check_hygiene_row();
COMMENT ON TRIGGER check_matchers ON monitoring_group_rules IS
'Matchers are checked in the form they are evaluated in; a bad one is refused with the reason.';
