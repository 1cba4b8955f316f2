-- Escalation: when an alert opens, the policy that applies is copied onto it; pg_cron runs
-- monitoring_run_oncall() every minute to move unacknowledged alerts to their next step.
--
-- Owns: monitoring_alert_escalations, monitoring_escalation_policies, monitoring_escalation_steps,
--       monitoring_escalation_assignments

CREATE OR REPLACE FUNCTION _monitoring_check_policy()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_policy_id bigint := (to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END) ->> TG_ARGV[0])::bigint;
BEGIN
    IF EXISTS (SELECT FROM public.monitoring_escalation_policies AS p WHERE p.id = v_policy_id)
       AND NOT EXISTS (SELECT FROM public.monitoring_escalation_steps AS s WHERE s.policy_id = v_policy_id) THEN
        RAISE EXCEPTION 'escalation policy % has no steps', (SELECT p.name FROM public.monitoring_escalation_policies AS p WHERE p.id = v_policy_id)
            USING ERRCODE = 'check_violation', HINT = 'insert its monitoring_escalation_steps in the same transaction';
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_check_policy() FROM PUBLIC;

DROP TRIGGER IF EXISTS policy_has_steps ON monitoring_escalation_policies;
CREATE CONSTRAINT TRIGGER policy_has_steps
AFTER INSERT OR UPDATE ON monitoring_escalation_policies
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION _monitoring_check_policy('id');
COMMENT ON TRIGGER policy_has_steps ON monitoring_escalation_policies IS
'At commit: an escalation policy without steps is refused (it could page nobody).';

DROP TRIGGER IF EXISTS policy_keeps_steps ON monitoring_escalation_steps;
CREATE CONSTRAINT TRIGGER policy_keeps_steps
AFTER DELETE OR UPDATE ON monitoring_escalation_steps
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION _monitoring_check_policy('policy_id');
COMMENT ON TRIGGER policy_keeps_steps ON monitoring_escalation_steps IS
'At commit: removing a policy''s last step is refused (it could page nobody).';

CREATE OR REPLACE FUNCTION _monitoring_step_at(p_escalation monitoring_alert_escalations, p_index integer)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE
AS $$
    -- p_index counts steps over all cycles; a cycle lasts the last step's delay plus repeat_after
    SELECT p_escalation.started_at
           + (p_index / jsonb_array_length(p_escalation.steps))
             * ((p_escalation.steps -> -1 ->> 'delay')::interval + p_escalation.repeat_after)
           + (p_escalation.steps -> (p_index % jsonb_array_length(p_escalation.steps)) ->> 'delay')::interval
$$;
REVOKE ALL ON FUNCTION _monitoring_step_at(monitoring_alert_escalations, integer) FROM PUBLIC;

-- Whom one escalation step pages at p_at: the named person, or the schedule's person now (schedule_current) or
-- at the start of the next shift (schedule_next, the backup); overrides count either way.
CREATE OR REPLACE FUNCTION _monitoring_step_person(p_step jsonb, p_at timestamptz)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_schedule public.monitoring_oncall_schedules;
    v_at timestamptz := p_at;
BEGIN
    IF p_step ->> 'target_type' = 'person' THEN
        RETURN (p_step ->> 'person_id')::bigint;
    END IF;
    SELECT * INTO v_schedule FROM public.monitoring_oncall_schedules AS s WHERE s.id = (p_step ->> 'schedule_id')::bigint;
    IF p_step ->> 'target_type' = 'schedule_next' THEN
        v_at := public._monitoring_shift_start(v_schedule, public._monitoring_shift_number(v_schedule, p_at) + 1);
    END IF;
    RETURN (
        SELECT pp.id FROM public.monitoring_who_is_on_call(v_schedule.name, v_at) AS w
        JOIN public.monitoring_people AS pp ON pp.name = w.person
    );
END
$$;
REVOKE ALL ON FUNCTION _monitoring_step_person(jsonb, timestamptz) FROM PUBLIC;

-- Escalation steps run as one statement for all due alerts, not a loop of statements per alert.
--
-- An INSERT of 10,000 critical alerts pages the primary for each of them (the seed policy's first step has
-- no delay), and the loop ran five statements per alert: 950 ms of the INSERT's 1.55 s. A pg_cron run
-- during an incident storm moves thousands of escalations in one call and paid the same per alert.
-- The rules:
-- - a step is due when its time (started_at, plus whole cycles, plus the step's delay) has come; steps are
--   ordered by delay and each cycle starts after the last step plus repeat_after, so the due steps of an
--   escalation are always the next ones in order;
-- - within one call each step names one person, asked once (a rotation is asked at p_at);
-- - a step whose person is found is paged through the outbox (_monitoring_enqueue_pages says on which
--   channels); the target names cycle and level, so no step is ever notified twice;
-- - an alert no longer open finishes its escalation (acknowledged, or resolved);
-- - after the last step of the last cycle and repeat_after more, the escalation is exhausted and
--   pgalert_unacknowledged is raised.

CREATE OR REPLACE FUNCTION _monitoring_escalate(p_at timestamptz, p_alert_ids bigint[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_notified integer;
    v_exhausted jsonb;
    v_alert_ids bigint[];
    v_levels integer[];
    v_pages jsonb;
    v_wanted bigint[];
BEGIN
    -- the escalations asked for, or every due one: looked up by key below (inside `p_alert_ids IS NULL OR`, the ids
    -- of a storm of 20,000 were searched one by one for each escalation)
    v_wanted := coalesce(p_alert_ids, ARRAY(SELECT e.alert_id FROM public.monitoring_alert_escalations AS e
                                            WHERE e.finished_at IS NULL AND e.next_step_at <= p_at));
    WITH due AS (
        SELECT e AS escalation, e.alert_id, e.next_index, e.level_reached, e.policy_name, e.repeat_count,
               e.repeat_after, a.status AS alert_status, a.title AS alert_title,
               jsonb_array_length(e.steps) AS step_count,
               jsonb_array_length(e.steps) * (e.repeat_count + 1) AS total
        FROM public.monitoring_alert_escalations AS e
        JOIN public.monitoring_alerts AS a ON a.id = e.alert_id
        WHERE e.finished_at IS NULL AND e.next_step_at <= p_at
          AND e.alert_id = ANY (v_wanted)
          -- a held alert pages nobody; its escalation starts when it is released (monitoring_release_holds)
          AND NOT EXISTS (SELECT FROM public.monitoring_notification_holds AS h
                          WHERE h.alert_id = e.alert_id AND h.released_at IS NULL)
        FOR UPDATE OF e SKIP LOCKED  -- a cron run racing another, or racing an acknowledge, never doubles a step
    ),
    due_steps AS (
        SELECT d.alert_id, i AS step_index, d.step_count, d.policy_name,
               (d.escalation).steps -> (i % d.step_count) AS step,
               i % d.step_count + 1 AS level,
               i / d.step_count + 1 AS cycle
        FROM due AS d
        CROSS JOIN LATERAL generate_series(d.next_index, d.total - 1) AS i
        WHERE d.alert_status = 'open' AND public._monitoring_step_at(d.escalation, i) <= p_at
    ),
    step_people AS MATERIALIZED (  -- materialized: asked once per distinct step, not once per alert
        SELECT s.step, public._monitoring_step_person(s.step, p_at) AS person_id
        FROM (SELECT DISTINCT ds.step FROM due_steps AS ds) AS s
    ),
    notifications AS (
        SELECT ds.*, pp.id AS person_id, pp.name, pp.slack_member_id
        FROM due_steps AS ds
        JOIN step_people AS sp ON sp.step = ds.step
        JOIN public.monitoring_people AS pp ON pp.id = sp.person_id
    ),
    progress AS (
        SELECT d.*,
               d.next_index + coalesce(moved.steps, 0) AS new_index,
               greatest(d.level_reached, moved.top_level) AS new_level,
               d.alert_status = 'open'
                   AND d.next_index + coalesce(moved.steps, 0) >= d.total
                   AND p_at >= public._monitoring_step_at(d.escalation, d.total - 1) + d.repeat_after AS exhausted
        FROM due AS d
        LEFT JOIN (
            SELECT ds.alert_id, count(*)::integer AS steps, max(ds.level) AS top_level
            FROM due_steps AS ds GROUP BY ds.alert_id
        ) AS moved ON moved.alert_id = d.alert_id
    ),
    moved AS (
        UPDATE public.monitoring_alert_escalations AS e
        SET next_index = pr.new_index,
            level_reached = pr.new_level,
            next_step_at = CASE
                WHEN pr.alert_status <> 'open' OR pr.exhausted THEN NULL
                WHEN pr.new_index < pr.total THEN public._monitoring_step_at(pr.escalation, pr.new_index)
                ELSE public._monitoring_step_at(pr.escalation, pr.total - 1) + pr.repeat_after
            END,
            finished_at = CASE WHEN pr.alert_status <> 'open' OR pr.exhausted THEN p_at END,
            finish_reason = CASE
                WHEN pr.alert_status = 'acknowledged' THEN 'acknowledged'
                WHEN pr.alert_status <> 'open' THEN 'resolved'
                WHEN pr.exhausted THEN 'exhausted'
            END
        FROM progress AS pr
        WHERE e.alert_id = pr.alert_id
    )
    SELECT (SELECT count(*) FROM notifications),
           (SELECT jsonb_agg(jsonb_build_object('id', pr.alert_id, 'title', pr.alert_title,
                                                'policy', pr.policy_name, 'cycles', pr.repeat_count + 1)
                             ORDER BY pr.alert_id)
            FROM progress AS pr WHERE pr.exhausted),
           ARRAY(SELECT pr.alert_id FROM progress AS pr ORDER BY pr.alert_id),
           ARRAY(SELECT pr.new_level FROM progress AS pr ORDER BY pr.alert_id),
           (SELECT jsonb_agg(jsonb_build_object(
                       'alert_id', n.alert_id, 'person_id', n.person_id,
                       'target', format('escalation:%s:%s', n.cycle, n.level),
                       'context', jsonb_strip_nulls(jsonb_build_object(
                           -- the person by id: the claim puts in their email and phone (secrets) when it is sent
                           'person', n.name, 'person_id', n.person_id, 'slack_member_id', n.slack_member_id,
                           'level', n.level, 'cycle', n.cycle, 'policy', n.policy_name,
                           'reason', CASE WHEN n.level = 1 AND n.step_index < n.step_count
                                          THEN 'you are on call for this alert'
                                          ELSE format('escalated to you (level %s): not acknowledged', n.level) END)))
                       ORDER BY n.alert_id, n.step_index)  -- delivery ids follow the steps: the chain reads in order
            FROM notifications AS n)
    INTO v_notified, v_exhausted, v_alert_ids, v_levels, v_pages;
    -- the pages go out through the outbox (which channels take them: sql/outbox.sql), and the level reached
    -- counts in the SLA figures (sql/sla.sql)
    PERFORM public._monitoring_enqueue_pages(v_pages);
    PERFORM public._monitoring_sla_escalated(v_alert_ids, v_levels);
    -- the people the steps named are paged by their own notification rules too (sql/paging.sql), and then the rules
    -- of every page of these alerts, new or not, move on (once: an escalation's alerts are a subset of p_alert_ids)
    IF v_pages IS NOT NULL THEN
        PERFORM public._monitoring_page_people(v_pages, p_at);
    END IF;
    PERFORM public._monitoring_run_person_pages(p_at, p_alert_ids);

    -- rare (nobody answered a whole policy), and each is an alert of its own with its own triggers, raised as
    -- an app raises one: an INSERT. A run for a later time (a test, a catch-up) raises it now, not ahead.
    INSERT INTO public.monitoring_alerts
        (alert_type, severity, title, message, source, dedup_key, details, occurred_at, created_at)
    SELECT 'pgalert_unacknowledged', 'critical', left('Nobody acknowledged: ' || (x ->> 'title'), 500),
           format('Alert %s went through escalation policy %s %s time(s) without an acknowledgement.',
                  x ->> 'id', x ->> 'policy', x ->> 'cycles'),
           'pgalert', 'pgalert_unacknowledged:' || (x ->> 'id'),
           jsonb_build_object('unacknowledged_alert_id', (x ->> 'id')::bigint, 'policy', x ->> 'policy'),
           least(p_at, now()), least(p_at, now())
    FROM jsonb_array_elements(coalesce(v_exhausted, '[]')) AS x;
    RETURN v_notified;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_escalate(timestamptz, bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_escalate(timestamptz, bigint[]) TO monitoring_admin;

-- New alerts take the policy that applies to them (their alert type's, else their severity's), copied with its
-- steps; a first step without delay goes out with the alert, not at the next cron minute, and at the alert's own
-- time, so a backfilled alert does not run its whole chain at once. Called by the INSERT trigger with the new
-- alerts that escalate on their own (a group's member escalates through its group), when a policy is assigned
-- to any of them.
CREATE OR REPLACE FUNCTION _monitoring_start_escalations(p_alerts monitoring_alerts[])
RETURNS void
LANGUAGE plpgsql
-- runs at every INSERT, called only by the INSERT trigger, whose SET clauses hold for it (see
-- _monitoring_enqueue_new_alerts)
AS $$
DECLARE
    v_batch record;
BEGIN
    FOR v_batch IN
    WITH started AS (
        INSERT INTO public.monitoring_alert_escalations
            (alert_id, policy_name, steps, repeat_count, repeat_after, started_at, next_step_at)
        SELECT a.id, p.name, steps.list, p.repeat_count, p.repeat_after, a.created_at,
               a.created_at + (steps.list -> 0 ->> 'delay')::interval
        FROM unnest(p_alerts) AS a
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
        PERFORM public._monitoring_escalate(v_batch.started_at, v_batch.ids);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_start_escalations(monitoring_alerts[]) FROM PUBLIC;

-- Alerts whose notifications were held until now (sql/silences.sql): their escalation resumes where it stood, the
-- held time not counted (_monitoring_held_since). One held from its INSERT starts now, as if it had just been
-- raised; one silenced 5 minutes before its level 2 reaches level 2 5 minutes after the silence ends.
CREATE OR REPLACE FUNCTION _monitoring_start_released_escalations(p_alert_ids bigint[], p_at timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE public.monitoring_alert_escalations AS e
    SET started_at = e.started_at + (p_at - greatest(held.since, e.started_at))
    FROM (SELECT x.alert_id, public._monitoring_held_since(x.alert_id, p_at) AS since
          FROM unnest(p_alert_ids) AS x (alert_id)) AS held
    WHERE e.alert_id = held.alert_id AND e.finished_at IS NULL AND held.since < p_at;
    UPDATE public.monitoring_alert_escalations AS e
    SET next_step_at = CASE
        WHEN e.next_index < jsonb_array_length(e.steps) * (e.repeat_count + 1)
            THEN public._monitoring_step_at(e, e.next_index)
        ELSE public._monitoring_step_at(e, jsonb_array_length(e.steps) * (e.repeat_count + 1) - 1) + e.repeat_after
    END
    WHERE e.alert_id = ANY (p_alert_ids) AND e.finished_at IS NULL;
    PERFORM public._monitoring_escalate(p_at, p_alert_ids);
END
$$;
REVOKE ALL ON FUNCTION _monitoring_start_released_escalations(bigint[], timestamptz) FROM PUBLIC;

-- The alert was acknowledged or resolved (sql/alerts.sql, p_why): its escalation ends now, in that transaction, so
-- nothing shows a next step for it (the console's alert page, On-call's "Escalating now"); finished_at is when it
-- paused, for a reopen to resume it from. An escalation already ended (acknowledged, then resolved) keeps the
-- reason and time it ended with.
CREATE OR REPLACE FUNCTION _monitoring_end_escalation(p_alert_id bigint, p_why text, p_at timestamptz)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.monitoring_alert_escalations
    SET finished_at = p_at, finish_reason = p_why, next_step_at = NULL
    WHERE alert_id = p_alert_id AND finished_at IS NULL;
$$;
REVOKE ALL ON FUNCTION _monitoring_end_escalation(bigint, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_end_escalation(bigint, text, timestamptz) TO monitoring_admin;

-- A reopened alert's escalation resumes where it paused, the paused time not counted: from when the acknowledge or
-- resolve ended it (an escalation ended by pg_cron before 0039, at its next step, paused at p_paused_at, the
-- alert's acknowledge or resolve).
CREATE OR REPLACE FUNCTION _monitoring_resume_escalation(p_alert_id bigint, p_paused_at timestamptz, p_at timestamptz)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.monitoring_alert_escalations AS e
    SET finished_at = NULL, finish_reason = NULL,
        started_at = e.started_at + greatest(p_at - coalesce(least(e.finished_at, p_paused_at), p_at), interval '0')
    WHERE e.alert_id = p_alert_id AND coalesce(e.finish_reason, 'acknowledged') IN ('acknowledged', 'resolved');
    UPDATE public.monitoring_alert_escalations AS e
    SET next_step_at = public._monitoring_step_at(e, e.next_index)
    WHERE e.alert_id = p_alert_id AND e.finished_at IS NULL;
$$;
REVOKE ALL ON FUNCTION _monitoring_resume_escalation(bigint, timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_resume_escalation(bigint, timestamptz, timestamptz) TO monitoring_admin;

CREATE OR REPLACE FUNCTION monitoring_run_oncall(p_at timestamptz DEFAULT now())
RETURNS TABLE (notifications integer, handoffs_announced integer)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT public._monitoring_escalate(p_at) AS notifications, public._monitoring_announce_handoffs(p_at) AS handoffs_announced
$$;
COMMENT ON FUNCTION monitoring_run_oncall(timestamptz) IS
'Move every unacknowledged alert to its next escalation step whose time has come (notifying the step''s person
through Slack and, where the alert went to it, the webhook), record the level reached, raise
pgalert_unacknowledged after the last repetition, and announce rotation handoffs. pg_cron runs it every minute;
p_at is for tests and backfills.';
REVOKE ALL ON FUNCTION monitoring_run_oncall(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_run_oncall(timestamptz) TO monitoring_admin;
