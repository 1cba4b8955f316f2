-- pgalert 0005: on-call rotations, overrides and escalation policies, as data.
--
-- Rotations are computed on the schedule's local wall clock, so a Monday 09:00 handoff in Berlin or Sao Paulo
-- stays at 09:00 local across daylight-saving changes. When an alert opens, the escalation policy that applies
-- is copied onto it; pg_cron runs monitoring_run_oncall() every minute to move unacknowledged alerts to their
-- next step and to announce handoffs.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE monitoring_people (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CONSTRAINT person_name_is_not_blank CHECK (btrim(name) <> ''),
    slack_member_id text CONSTRAINT slack_member_id_looks_right CHECK (slack_member_id ~ '^[UW][A-Z0-9]{2,}$'),
    email text CONSTRAINT email_looks_right CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
    phone text
);
COMMENT ON TABLE monitoring_people IS
'Who can be paged. slack_member_id (U0123ABC) makes Slack notifications mention them.';

CREATE TABLE monitoring_oncall_schedules (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CONSTRAINT schedule_name_is_simple CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    time_zone text NOT NULL DEFAULT 'UTC',
    rotation_length interval NOT NULL DEFAULT '7 days',
    handoff_day integer NOT NULL DEFAULT 1 CONSTRAINT handoff_day_is_iso CHECK (handoff_day BETWEEN 1 AND 7),
    handoff_time time NOT NULL DEFAULT '09:00',
    rotation_start date NOT NULL DEFAULT '2026-01-05',
    announce_handoffs boolean NOT NULL DEFAULT TRUE,
    last_announced_shift bigint,
    CONSTRAINT rotation_is_whole_days CHECK (
        rotation_length >= '1 day' AND date_part('hour', rotation_length) = 0 AND date_part('minute', rotation_length) = 0
        AND date_part('second', rotation_length) = 0 AND date_part('month', rotation_length) = 0
    )
);
COMMENT ON TABLE monitoring_oncall_schedules IS
'A rotation: participants take turns for rotation_length (whole days), handing off on handoff_day (ISO: 1 =
Monday) at handoff_time in time_zone, counting from the first such handoff on or after rotation_start.';

CREATE TABLE monitoring_oncall_participants (
    schedule_id bigint NOT NULL REFERENCES monitoring_oncall_schedules (id) ON DELETE CASCADE,
    position integer NOT NULL CONSTRAINT position_is_positive CHECK (position >= 1),
    person_id bigint NOT NULL REFERENCES monitoring_people (id),
    PRIMARY KEY (schedule_id, position)
);
COMMENT ON TABLE monitoring_oncall_participants IS 'Who rotates through a schedule, in position order.';

CREATE TABLE monitoring_oncall_overrides (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schedule_id bigint NOT NULL REFERENCES monitoring_oncall_schedules (id) ON DELETE CASCADE,
    person_id bigint NOT NULL REFERENCES monitoring_people (id),
    during tstzrange NOT NULL CONSTRAINT override_has_a_length CHECK (NOT isempty(during) AND NOT lower_inf(during) AND NOT upper_inf(during)),
    reason text,
    CONSTRAINT overrides_do_not_overlap EXCLUDE USING gist (schedule_id WITH =, during WITH &&)
);
COMMENT ON TABLE monitoring_oncall_overrides IS
'Someone covers a schedule for a time range; overlapping overrides in one schedule are refused.';

CREATE FUNCTION _monitoring_check_schedule()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- one function for both tables: TG_ARGV[0] names the column holding the schedule id
    v_row jsonb := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
    v_schedule_id bigint := (v_row ->> TG_ARGV[0])::bigint;
BEGIN
    IF TG_TABLE_NAME = 'monitoring_oncall_schedules'
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_timezone_names WHERE name = v_row ->> 'time_zone') THEN
        RAISE EXCEPTION 'schedule %: unknown time zone %', v_row ->> 'name', quote_literal(v_row ->> 'time_zone')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'an IANA name such as Europe/Berlin or America/Sao_Paulo';
    END IF;
    IF EXISTS (SELECT FROM public.monitoring_oncall_schedules AS s WHERE s.id = v_schedule_id)
       AND NOT EXISTS (SELECT FROM public.monitoring_oncall_participants AS p WHERE p.schedule_id = v_schedule_id) THEN
        RAISE EXCEPTION 'schedule % has no participants', (SELECT s.name FROM public.monitoring_oncall_schedules AS s WHERE s.id = v_schedule_id)
            USING ERRCODE = 'check_violation',
                  HINT = 'insert its monitoring_oncall_participants in the same transaction';
    END IF;
    RETURN NULL;
END
$$;

-- checked at commit, so a schedule and its participants can be written in one transaction
CREATE CONSTRAINT TRIGGER schedule_has_participants
AFTER INSERT OR UPDATE ON monitoring_oncall_schedules
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION _monitoring_check_schedule('id');

CREATE CONSTRAINT TRIGGER schedule_keeps_participants
AFTER DELETE OR UPDATE ON monitoring_oncall_participants
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION _monitoring_check_schedule('schedule_id');

-- The first handoff, on the schedule's local wall clock: handoff_day at handoff_time, on or after rotation_start.
CREATE FUNCTION _monitoring_first_handoff(p_schedule monitoring_oncall_schedules)
RETURNS timestamp
LANGUAGE sql IMMUTABLE
AS $$
    SELECT (p_schedule.rotation_start
            + (p_schedule.handoff_day - extract(ISODOW FROM p_schedule.rotation_start)::integer + 7) % 7)
           + p_schedule.handoff_time
$$;

-- The shift number at a moment: whole rotations since the first handoff, on the local wall clock.
CREATE FUNCTION _monitoring_shift_number(p_schedule monitoring_oncall_schedules, p_at timestamptz)
RETURNS bigint
LANGUAGE sql STABLE
AS $$
    SELECT floor(
        date_part('epoch', (p_at AT TIME ZONE p_schedule.time_zone) - public._monitoring_first_handoff(p_schedule))
        / date_part('epoch', p_schedule.rotation_length)
    )::bigint
$$;

-- When a shift begins: the local wall-clock time, converted in the schedule's zone (so DST is honoured).
CREATE FUNCTION _monitoring_shift_start(p_schedule monitoring_oncall_schedules, p_shift bigint)
RETURNS timestamptz
LANGUAGE sql STABLE
AS $$
    SELECT (public._monitoring_first_handoff(p_schedule) + p_shift * p_schedule.rotation_length)
           AT TIME ZONE p_schedule.time_zone
$$;

CREATE FUNCTION _monitoring_rotation_person(p_schedule monitoring_oncall_schedules, p_shift bigint)
RETURNS bigint
LANGUAGE sql STABLE
AS $$
    SELECT p.person_id
    FROM public.monitoring_oncall_participants AS p
    WHERE p.schedule_id = p_schedule.id
    ORDER BY p.position
    OFFSET (
        p_shift % (SELECT count(*) FROM public.monitoring_oncall_participants AS c WHERE c.schedule_id = p_schedule.id)
        + (SELECT count(*) FROM public.monitoring_oncall_participants AS c WHERE c.schedule_id = p_schedule.id)
    ) % (SELECT count(*) FROM public.monitoring_oncall_participants AS c WHERE c.schedule_id = p_schedule.id)
    LIMIT 1
$$;

CREATE FUNCTION _monitoring_get_schedule(p_schedule text)
RETURNS monitoring_oncall_schedules
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_schedule public.monitoring_oncall_schedules;
BEGIN
    SELECT * INTO v_schedule FROM public.monitoring_oncall_schedules AS s WHERE s.name = p_schedule;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'schedule % does not exist', coalesce(quote_literal(p_schedule), 'NULL')
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN v_schedule;
END
$$;

CREATE FUNCTION monitoring_who_is_on_call(p_schedule text, p_at timestamptz DEFAULT now())
RETURNS TABLE (person text, slack_member_id text, email text, phone text, is_override boolean, shift_ends_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_schedule public.monitoring_oncall_schedules := public._monitoring_get_schedule(p_schedule);
    v_shift bigint := public._monitoring_shift_number(v_schedule, p_at);
    v_override public.monitoring_oncall_overrides;
BEGIN
    SELECT * INTO v_override FROM public.monitoring_oncall_overrides AS o
    WHERE o.schedule_id = v_schedule.id AND o.during @> p_at;
    RETURN QUERY
    SELECT pp.name, pp.slack_member_id, pp.email, pp.phone, v_override.id IS NOT NULL,
           CASE WHEN v_override.id IS NOT NULL THEN upper(v_override.during)
                ELSE public._monitoring_shift_start(v_schedule, v_shift + 1) END
    FROM public.monitoring_people AS pp
    WHERE pp.id = coalesce(v_override.person_id, public._monitoring_rotation_person(v_schedule, v_shift));
END
$$;
COMMENT ON FUNCTION monitoring_who_is_on_call(text, timestamptz) IS
'The person on call for a schedule at p_at: an override covering p_at first, else the rotation''s person for
that shift (computed on the schedule''s local clock, so handoffs keep their local time across DST), with when
their turn ends.';

CREATE FUNCTION monitoring_oncall_timeline(p_schedule text, p_from timestamptz DEFAULT now(), p_to timestamptz DEFAULT now() + interval '28 days')
RETURNS TABLE (starts_at timestamptz, ends_at timestamptz, person text, is_override boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_schedule public.monitoring_oncall_schedules := public._monitoring_get_schedule(p_schedule);
BEGIN
    RETURN QUERY
    SELECT greatest(public._monitoring_shift_start(v_schedule, n), p_from),
           least(public._monitoring_shift_start(v_schedule, n + 1), p_to),
           pp.name, FALSE
    FROM generate_series(public._monitoring_shift_number(v_schedule, p_from),
                         public._monitoring_shift_number(v_schedule, p_to)) AS n
    JOIN public.monitoring_people AS pp ON pp.id = public._monitoring_rotation_person(v_schedule, n)
    WHERE public._monitoring_shift_start(v_schedule, n) < p_to
    UNION ALL
    SELECT greatest(lower(o.during), p_from), least(upper(o.during), p_to), pp.name, TRUE
    FROM public.monitoring_oncall_overrides AS o
    JOIN public.monitoring_people AS pp ON pp.id = o.person_id
    WHERE o.schedule_id = v_schedule.id AND o.during && tstzrange(p_from, p_to)
    ORDER BY 1, 4;
END
$$;
COMMENT ON FUNCTION monitoring_oncall_timeline(text, timestamptz, timestamptz) IS
'The rotation''s shifts between p_from and p_to (default: the next 4 weeks), and the overrides within them
(is_override; an override wins for its range).';

------------------------------------------------------------------------------------------------------------
-- Escalation policies
------------------------------------------------------------------------------------------------------------
CREATE TABLE monitoring_escalation_policies (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE,
    repeat_count integer NOT NULL DEFAULT 0 CONSTRAINT repeat_count_is_not_negative CHECK (repeat_count >= 0),
    repeat_after interval NOT NULL DEFAULT '15 minutes' CONSTRAINT repeat_after_is_positive CHECK (repeat_after > '0'),
    description text NOT NULL DEFAULT ''
);
COMMENT ON TABLE monitoring_escalation_policies IS
'Who is notified while an alert stays unacknowledged. After the last step, the chain starts again
repeat_after later, repeat_count times; then pgalert_unacknowledged is raised.';

CREATE TABLE monitoring_escalation_steps (
    policy_id bigint NOT NULL REFERENCES monitoring_escalation_policies (id) ON DELETE CASCADE,
    step integer NOT NULL CONSTRAINT step_is_positive CHECK (step >= 1),
    delay interval NOT NULL,
    target_type text NOT NULL CONSTRAINT target_type_is_known CHECK (target_type IN ('schedule_current', 'schedule_next', 'person')),
    schedule_id bigint REFERENCES monitoring_oncall_schedules (id),
    person_id bigint REFERENCES monitoring_people (id),
    PRIMARY KEY (policy_id, step),
    CONSTRAINT delay_is_not_negative CHECK (delay >= '0'),
    CONSTRAINT target_is_named CHECK (
        (target_type = 'person' AND person_id IS NOT NULL AND schedule_id IS NULL)
        OR (target_type <> 'person' AND schedule_id IS NOT NULL AND person_id IS NULL)
    )
);
COMMENT ON TABLE monitoring_escalation_steps IS
'The steps of a policy: delay after the alert opened (within one cycle), and whom to notify: the schedule''s
current person, its next person (the backup), or a named person.';
COMMENT ON COLUMN monitoring_escalation_steps.target_type IS
'schedule_current: who is on call; schedule_next: who is on call next shift (backup); person: person_id.';

CREATE TABLE monitoring_escalation_assignments (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    severity text CONSTRAINT assignment_severity_is_known CHECK (severity IN ('critical', 'warning', 'info')),
    alert_type text,
    policy_id bigint NOT NULL REFERENCES monitoring_escalation_policies (id) ON DELETE CASCADE,
    CONSTRAINT assignment_names_something CHECK (severity IS NOT NULL OR alert_type IS NOT NULL)
);
CREATE UNIQUE INDEX one_assignment_per_scope ON monitoring_escalation_assignments (coalesce(severity, ''), coalesce(alert_type, ''));
COMMENT ON TABLE monitoring_escalation_assignments IS
'Which policy escalates which alerts: a row naming the alert_type wins over one naming only the severity.';

CREATE FUNCTION _monitoring_check_policy()
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

CREATE CONSTRAINT TRIGGER policy_has_steps
AFTER INSERT OR UPDATE ON monitoring_escalation_policies
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION _monitoring_check_policy('id');

CREATE CONSTRAINT TRIGGER policy_keeps_steps
AFTER DELETE OR UPDATE ON monitoring_escalation_steps
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION _monitoring_check_policy('policy_id');

-- The escalation in flight for one alert, with its policy copied, so editing a policy never changes it.
CREATE TABLE monitoring_alert_escalations (
    alert_id bigint PRIMARY KEY REFERENCES monitoring_alerts (id) ON DELETE CASCADE,
    policy_name text NOT NULL,
    steps jsonb NOT NULL,
    repeat_count integer NOT NULL,
    repeat_after interval NOT NULL,
    started_at timestamptz NOT NULL,
    next_index integer NOT NULL DEFAULT 0,
    next_step_at timestamptz,
    level_reached integer NOT NULL DEFAULT 0,
    finished_at timestamptz,
    finish_reason text
);
CREATE INDEX monitoring_alert_escalations_due ON monitoring_alert_escalations (next_step_at) WHERE finished_at IS NULL;
COMMENT ON TABLE monitoring_alert_escalations IS
'One row per escalating alert: the policy as it was when the alert opened (steps), the next step and when it
is due, the highest level reached, and why it finished (acknowledged, resolved, exhausted).';

CREATE FUNCTION _monitoring_step_at(p_escalation monitoring_alert_escalations, p_index integer)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE
AS $$
    -- p_index counts steps over all cycles; a cycle lasts the last step's delay plus repeat_after
    SELECT p_escalation.started_at
           + (p_index / jsonb_array_length(p_escalation.steps))
             * ((p_escalation.steps -> -1 ->> 'delay')::interval + p_escalation.repeat_after)
           + (p_escalation.steps -> (p_index % jsonb_array_length(p_escalation.steps)) ->> 'delay')::interval
$$;

-- Whom one escalation step pages at p_at: the named person, or the schedule's person now (schedule_current) or
-- at the start of the next shift (schedule_next, the backup); overrides count either way.
CREATE FUNCTION _monitoring_step_person(p_step jsonb, p_at timestamptz)
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

-- Run the due steps of the given escalations (all when p_alert_ids is NULL).
CREATE FUNCTION _monitoring_escalate(p_at timestamptz, p_alert_ids bigint[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_esc public.monitoring_alert_escalations;
    v_alert public.monitoring_alerts;
    v_step jsonb;
    v_steps integer;
    v_total integer;
    v_person public.monitoring_people;
    v_notified integer := 0;
    v_level integer;
    v_person_of_step jsonb := '{}';  -- within one call p_at is fixed, so each step names the same person
BEGIN
    FOR v_esc IN
        SELECT * FROM public.monitoring_alert_escalations AS e
        WHERE e.finished_at IS NULL AND e.next_step_at <= p_at
          AND (p_alert_ids IS NULL OR e.alert_id = ANY (p_alert_ids))
        ORDER BY e.next_step_at
        FOR UPDATE SKIP LOCKED  -- a cron run racing another, or racing an acknowledge, never doubles a step
    LOOP
        SELECT * INTO v_alert FROM public.monitoring_alerts AS a WHERE a.id = v_esc.alert_id;
        IF v_alert.status <> 'open' THEN
            UPDATE public.monitoring_alert_escalations AS e
            SET finished_at = p_at, finish_reason = CASE v_alert.status WHEN 'acknowledged' THEN 'acknowledged' ELSE 'resolved' END,
                next_step_at = NULL
            WHERE e.alert_id = v_esc.alert_id;
            CONTINUE;
        END IF;
        v_steps := jsonb_array_length(v_esc.steps);
        v_total := v_steps * (v_esc.repeat_count + 1);
        WHILE v_esc.next_index < v_total AND public._monitoring_step_at(v_esc, v_esc.next_index) <= p_at LOOP
            v_step := v_esc.steps -> (v_esc.next_index % v_steps);
            v_level := (v_esc.next_index % v_steps) + 1;
            IF NOT v_person_of_step ? v_step::text THEN
                v_person_of_step := v_person_of_step
                    || jsonb_build_object(v_step::text, public._monitoring_step_person(v_step, p_at));
            END IF;
            SELECT pp.* INTO v_person FROM public.monitoring_people AS pp
            WHERE pp.id = (v_person_of_step ->> v_step::text)::bigint;
            IF v_person.id IS NOT NULL THEN
                -- the target names the cycle and step, so a step is notified once whatever races it
                INSERT INTO public.monitoring_deliveries (alert_id, provider, action, target, context)
                SELECT v_esc.alert_id, p.provider, 'notify',
                       format('escalation:%s:%s', v_esc.next_index / v_steps + 1, v_level),
                       jsonb_strip_nulls(jsonb_build_object(
                           'person', v_person.name, 'slack_member_id', v_person.slack_member_id,
                           'email', v_person.email, 'phone', v_person.phone, 'level', v_level,
                           'cycle', v_esc.next_index / v_steps + 1, 'policy', v_esc.policy_name,
                           'reason', CASE WHEN v_level = 1 AND v_esc.next_index < v_steps THEN 'you are on call for this alert'
                                          ELSE format('escalated to you (level %s): not acknowledged', v_level) END))
                FROM public.monitoring_providers AS p
                WHERE 'notify' = ANY (p.actions)
                  AND (p.provider = 'slack' OR EXISTS (
                      SELECT FROM public.monitoring_deliveries AS t
                      WHERE t.alert_id = v_esc.alert_id AND t.provider = p.provider AND t.action = 'trigger'
                        AND t.status <> 'skipped'))
                ON CONFLICT ON CONSTRAINT one_delivery_per_alert_provider_action DO NOTHING;
                v_notified := v_notified + 1;
            END IF;
            v_esc.level_reached := greatest(v_esc.level_reached, v_level);
            v_esc.next_index := v_esc.next_index + 1;
        END LOOP;
        UPDATE public.monitoring_sla_metrics AS s SET escalation_level = greatest(s.escalation_level, v_esc.level_reached)
        WHERE s.alert_id = v_esc.alert_id;
        IF v_esc.next_index >= v_total AND p_at >= public._monitoring_step_at(v_esc, v_total - 1) + v_esc.repeat_after THEN
            UPDATE public.monitoring_alert_escalations AS e
            SET next_index = v_esc.next_index, level_reached = v_esc.level_reached, next_step_at = NULL,
                finished_at = p_at, finish_reason = 'exhausted'
            WHERE e.alert_id = v_esc.alert_id;
            PERFORM public.monitoring_raise_alert(
                'pgalert_unacknowledged', 'critical', left('Nobody acknowledged: ' || v_alert.title, 500),
                format('Alert %s went through escalation policy %s %s time(s) without an acknowledgement.',
                       v_alert.id, v_esc.policy_name, v_esc.repeat_count + 1),
                'pgalert', 'pgalert_unacknowledged:' || v_alert.id,
                jsonb_build_object('unacknowledged_alert_id', v_alert.id, 'policy', v_esc.policy_name), NULL, p_at);
        ELSE
            UPDATE public.monitoring_alert_escalations AS e
            SET next_index = v_esc.next_index, level_reached = v_esc.level_reached,
                next_step_at = CASE WHEN v_esc.next_index < v_total THEN public._monitoring_step_at(v_esc, v_esc.next_index)
                                    ELSE public._monitoring_step_at(v_esc, v_total - 1) + v_esc.repeat_after END
            WHERE e.alert_id = v_esc.alert_id;
        END IF;
    END LOOP;
    RETURN v_notified;
END
$$;

-- One AFTER INSERT trigger on monitoring_alerts instead of three: each invocation has a fixed cost that a
-- single-row INSERT pays in full. It writes the outbox (0001), the SLA row (0003) and starts escalations.
DROP TRIGGER monitoring_alerts_sla_insert ON monitoring_alerts;
DROP FUNCTION _monitoring_sla_on_alert_insert();

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
    -- a later row of the same INSERT may have deduplicated into this one and enqueued already
    ON CONFLICT ON CONSTRAINT one_delivery_per_alert_provider_action DO NOTHING;

    -- handoff announcements are not incidents: kept out of the SLA figures
    INSERT INTO public.monitoring_sla_metrics (alert_id, alert_type, severity, occurred_at, detected_at)
    SELECT a.id, a.alert_type, a.severity, a.occurred_at, a.created_at FROM new_alerts AS a
    WHERE a.alert_type <> 'oncall_handoff';

    IF NOT EXISTS (
        SELECT FROM new_alerts AS a
        JOIN public.monitoring_escalation_assignments AS x
            ON x.alert_type = a.alert_type OR (x.alert_type IS NULL AND x.severity = a.severity)
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
        WHERE a.alert_type NOT IN ('pgalert_unacknowledged', 'oncall_handoff')
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

-- Handoffs: a Slack message naming who is now on call, once per schedule and shift.
CREATE FUNCTION _monitoring_announce_handoffs(p_at timestamptz)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_schedule public.monitoring_oncall_schedules;
    v_shift bigint;
    v_person record;
    v_count integer := 0;
    v_alert bigint;
BEGIN
    FOR v_schedule IN
        SELECT * FROM public.monitoring_oncall_schedules AS s WHERE s.announce_handoffs FOR UPDATE SKIP LOCKED
    LOOP
        v_shift := public._monitoring_shift_number(v_schedule, p_at);
        CONTINUE WHEN v_schedule.last_announced_shift IS NOT DISTINCT FROM v_shift;
        UPDATE public.monitoring_oncall_schedules AS s SET last_announced_shift = v_shift WHERE s.id = v_schedule.id;
        CONTINUE WHEN v_schedule.last_announced_shift IS NULL;  -- a new schedule starts quietly
        SELECT * INTO v_person FROM public.monitoring_who_is_on_call(v_schedule.name, p_at);
        INSERT INTO public.monitoring_alerts (alert_type, severity, title, message, source, dedup_key, created_at, occurred_at)
        VALUES ('oncall_handoff', 'info',
                format('%s is now on call for %s', v_person.person, v_schedule.name),
                format('Until %s.', v_person.shift_ends_at AT TIME ZONE v_schedule.time_zone) ||
                CASE WHEN v_person.slack_member_id IS NOT NULL THEN format(' <@%s>', v_person.slack_member_id) ELSE '' END,
                v_schedule.name, format('oncall_handoff:%s:%s', v_schedule.name, v_shift), p_at, p_at)
        RETURNING id INTO v_alert;
        -- an announcement, not an incident: closed at once, without follow-up messages
        UPDATE public.monitoring_alerts SET status = 'resolved', resolved_at = p_at, resolved_by = 'pgalert'
        WHERE id = v_alert;
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;

CREATE FUNCTION monitoring_run_oncall(p_at timestamptz DEFAULT now())
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

------------------------------------------------------------------------------------------------------------
-- The seed's chain: Primary, then Backup after 15 minutes, Manager after 30, then the CTO, for critical alerts.
-- The people are placeholders: rename them and add Slack member ids (see README).
------------------------------------------------------------------------------------------------------------
INSERT INTO monitoring_people (name) VALUES ('primary_engineer_1'), ('primary_engineer_2'), ('engineering_manager'), ('cto');
INSERT INTO monitoring_oncall_schedules (name, time_zone) VALUES ('primary', 'UTC');
INSERT INTO monitoring_oncall_participants (schedule_id, position, person_id)
SELECT
    s.id AS schedule_id,
    p.position,
    pp.id AS person_id
FROM monitoring_oncall_schedules AS s
CROSS JOIN (VALUES (1, 'primary_engineer_1'), (2, 'primary_engineer_2')) AS p (position, name)
INNER JOIN monitoring_people AS pp ON p.name = pp.name
WHERE s.name = 'primary';
INSERT INTO monitoring_escalation_policies (name, description) VALUES
('default_critical', 'Primary on call, then the backup after 15 minutes, the manager after 30, the CTO after 45.');
INSERT INTO monitoring_escalation_steps (policy_id, step, delay, target_type, schedule_id, person_id)
SELECT
    pol.id,
    v.step,
    v.delay::interval,
    v.target_type,
    CASE WHEN v.target_type <> 'person' THEN s.id END AS schedule_id,
    CASE WHEN v.target_type = 'person' THEN pp.id END AS person_id
FROM monitoring_escalation_policies AS pol
CROSS JOIN (
    VALUES
    (1, '0 minutes', 'schedule_current', NULL), (2, '15 minutes', 'schedule_next', NULL),
    (3, '30 minutes', 'person', 'engineering_manager'), (4, '45 minutes', 'person', 'cto')
) AS v (step, delay, target_type, person_name)
CROSS JOIN monitoring_oncall_schedules AS s
LEFT JOIN monitoring_people AS pp ON v.person_name = pp.name
WHERE pol.name = 'default_critical' AND s.name = 'primary';
INSERT INTO monitoring_escalation_assignments (severity, policy_id)
SELECT
    'critical' AS severity,
    id AS policy_id
FROM monitoring_escalation_policies
WHERE name = 'default_critical';

INSERT INTO monitoring_sla_targets (metric, severity, target, compliance) VALUES ('mtta', 'critical', 300, 0.90);

INSERT INTO monitoring_schedules (job_name, schedule, command, description) VALUES
(
    'pgalert_oncall', '* * * * *', 'SELECT monitoring_run_oncall()',
    'Every minute: escalate unacknowledged alerts and announce rotation handoffs.'
);
SELECT monitoring_install_schedules();

------------------------------------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------------------------------------
REVOKE ALL ON monitoring_people, monitoring_oncall_schedules, monitoring_oncall_participants,
monitoring_oncall_overrides, monitoring_escalation_policies, monitoring_escalation_steps,
monitoring_escalation_assignments, monitoring_alert_escalations FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
GRANT SELECT ON monitoring_people, monitoring_oncall_schedules, monitoring_oncall_participants,
monitoring_oncall_overrides, monitoring_escalation_policies, monitoring_escalation_steps,
monitoring_escalation_assignments, monitoring_alert_escalations TO monitoring_reader;
GRANT INSERT, UPDATE, DELETE ON monitoring_people, monitoring_oncall_schedules, monitoring_oncall_participants,
monitoring_oncall_overrides, monitoring_escalation_policies, monitoring_escalation_steps,
monitoring_escalation_assignments TO monitoring_admin;
GRANT EXECUTE ON FUNCTION monitoring_who_is_on_call(text, timestamptz),
monitoring_oncall_timeline(text, timestamptz, timestamptz),
_monitoring_get_schedule(text), _monitoring_shift_number(monitoring_oncall_schedules, timestamptz),
_monitoring_first_handoff(monitoring_oncall_schedules),
_monitoring_shift_start(monitoring_oncall_schedules, bigint),
_monitoring_rotation_person(monitoring_oncall_schedules, bigint) TO monitoring_reader, monitoring_admin;
GRANT EXECUTE ON FUNCTION monitoring_run_oncall(timestamptz), _monitoring_announce_handoffs(timestamptz),
_monitoring_escalate(timestamptz, bigint[]) TO monitoring_admin;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0005', 'oncall');
