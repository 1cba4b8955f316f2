-- On-call: who is on call, from rotations on the schedule's local wall clock and overrides; handoff messages.
--
-- Rotations are computed on the local wall clock, so a Monday 09:00 handoff in Berlin or Sao Paulo stays at
-- 09:00 local across daylight-saving changes.
--
-- Owns: monitoring_people, monitoring_oncall_schedules, monitoring_oncall_participants, monitoring_oncall_overrides
-- (a handoff is announced as an alert of type oncall_handoff, INSERTed as an app raises one.)

CREATE OR REPLACE FUNCTION _monitoring_check_schedule()
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
REVOKE ALL ON FUNCTION _monitoring_check_schedule() FROM PUBLIC;

-- checked at commit, so a schedule and its participants can be written in one transaction
DROP TRIGGER IF EXISTS schedule_has_participants ON monitoring_oncall_schedules;
CREATE CONSTRAINT TRIGGER schedule_has_participants
AFTER INSERT OR UPDATE ON monitoring_oncall_schedules
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION _monitoring_check_schedule('id');
COMMENT ON TRIGGER schedule_has_participants ON monitoring_oncall_schedules IS
'At commit: a schedule without participants is refused (it could page nobody).';

DROP TRIGGER IF EXISTS schedule_keeps_participants ON monitoring_oncall_participants;
CREATE CONSTRAINT TRIGGER schedule_keeps_participants
AFTER DELETE OR UPDATE ON monitoring_oncall_participants
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION _monitoring_check_schedule('schedule_id');
COMMENT ON TRIGGER schedule_keeps_participants ON monitoring_oncall_participants IS
'At commit: removing a schedule''s last participant is refused (it could page nobody).';

-- A sentence instead of a constraint's name, before the table's constraints would refuse the row.
CREATE OR REPLACE FUNCTION _monitoring_explain_oncall_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- one IF per table: a record's fields are looked up when the expression first runs
    IF TG_TABLE_NAME = 'monitoring_oncall_schedules' THEN
        IF NEW.rotation_length < interval '1 day' OR date_part('month', NEW.rotation_length) <> 0
           OR date_part('hour', NEW.rotation_length) <> 0 OR date_part('minute', NEW.rotation_length) <> 0
           OR date_part('second', NEW.rotation_length) <> 0 THEN
            RAISE EXCEPTION 'schedule %: rotation_length % is not a whole number of days', NEW.name, NEW.rotation_length
                USING ERRCODE = 'check_violation',
                      HINT = 'shifts are counted in days on the local wall clock, e.g. ''7 days'' or ''14 days''; '
                             'handoff_time says when in the day they change';
        END IF;
    ELSIF isempty(NEW.during) OR lower_inf(NEW.during) OR upper_inf(NEW.during) THEN
        RAISE EXCEPTION 'an override needs a start and a later end, got %', NEW.during
            USING ERRCODE = 'check_violation',
                  HINT = 'SELECT monitoring_add_override(''primary'', ''alice'', ''2026-03-02 09:00Z'', '
                         '''2026-03-03 09:00Z'', ''covering for bob'')';
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_explain_oncall_row() FROM PUBLIC;

CREATE OR REPLACE TRIGGER monitoring_oncall_schedules_explain
BEFORE INSERT OR UPDATE ON monitoring_oncall_schedules
FOR EACH ROW EXECUTE FUNCTION _monitoring_explain_oncall_row();
COMMENT ON TRIGGER monitoring_oncall_schedules_explain ON monitoring_oncall_schedules IS
'A schedule that cannot work (unknown time zone, no participants) is refused with a sentence saying why.';

CREATE OR REPLACE TRIGGER monitoring_oncall_overrides_explain
BEFORE INSERT OR UPDATE ON monitoring_oncall_overrides
FOR EACH ROW EXECUTE FUNCTION _monitoring_explain_oncall_row();
COMMENT ON TRIGGER monitoring_oncall_overrides_explain ON monitoring_oncall_overrides IS
'An override that cannot work is refused with a sentence saying why.';

CREATE OR REPLACE FUNCTION monitoring_add_override(
    p_schedule text, p_person text, p_from timestamptz, p_until timestamptz, p_reason text DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_schedule_id bigint;
    v_person_id bigint;
    v_clash record;
    v_id bigint;
BEGIN
    SELECT s.id INTO v_schedule_id FROM public.monitoring_oncall_schedules AS s WHERE s.name = p_schedule;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'schedule % does not exist', coalesce(quote_literal(p_schedule), 'NULL')
            USING ERRCODE = 'no_data_found', HINT = 'SELECT name FROM monitoring_oncall_schedules';
    END IF;
    SELECT pp.id INTO v_person_id FROM public.monitoring_people AS pp WHERE pp.name = p_person;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'person % does not exist', coalesce(quote_literal(p_person), 'NULL')
            USING ERRCODE = 'no_data_found', HINT = 'INSERT INTO monitoring_people (name) VALUES (...) first';
    END IF;
    IF p_from IS NULL OR p_until IS NULL OR p_until <= p_from THEN
        RAISE EXCEPTION 'an override ends after it starts: from %, until %', p_from, p_until
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT o.id, pp.name AS person, o.during INTO v_clash
    FROM public.monitoring_oncall_overrides AS o
    JOIN public.monitoring_people AS pp ON pp.id = o.person_id
    WHERE o.schedule_id = v_schedule_id AND o.during && tstzrange(p_from, p_until)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'schedule % already has override % (%, %) in that time', p_schedule, v_clash.id,
            v_clash.person, v_clash.during
            USING ERRCODE = 'exclusion_violation',
                  HINT = 'change or delete that one first: one person covers a schedule at a time';
    END IF;
    INSERT INTO public.monitoring_oncall_overrides (schedule_id, person_id, during, reason)
    VALUES (v_schedule_id, v_person_id, tstzrange(p_from, p_until), p_reason)
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION monitoring_add_override(text, text, timestamptz, timestamptz, text) IS
'p_person covers schedule p_schedule from p_from until p_until (why: p_reason); returns the override id. Each
mistake gets a sentence: an unknown schedule or person, an end not after the start, an overlap with another
override of the schedule (named).';
REVOKE ALL ON FUNCTION monitoring_add_override(text, text, timestamptz, timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_add_override(text, text, timestamptz, timestamptz, text) TO monitoring_admin;

-- The first handoff, on the schedule's local wall clock: handoff_day at handoff_time, on or after rotation_start.
CREATE OR REPLACE FUNCTION _monitoring_first_handoff(p_schedule monitoring_oncall_schedules)
RETURNS timestamp
LANGUAGE sql IMMUTABLE
AS $$
    SELECT (p_schedule.rotation_start
            + (p_schedule.handoff_day - extract(ISODOW FROM p_schedule.rotation_start)::integer + 7) % 7)
           + p_schedule.handoff_time
$$;
REVOKE ALL ON FUNCTION _monitoring_first_handoff(monitoring_oncall_schedules) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_first_handoff(monitoring_oncall_schedules) TO monitoring_reader, monitoring_admin;

-- The shift number at a moment: whole rotations since the first handoff, on the local wall clock.
CREATE OR REPLACE FUNCTION _monitoring_shift_number(p_schedule monitoring_oncall_schedules, p_at timestamptz)
RETURNS bigint
LANGUAGE sql STABLE
AS $$
    SELECT floor(
        date_part('epoch', (p_at AT TIME ZONE p_schedule.time_zone) - public._monitoring_first_handoff(p_schedule))
        / date_part('epoch', p_schedule.rotation_length)
    )::bigint
$$;
REVOKE ALL ON FUNCTION _monitoring_shift_number(monitoring_oncall_schedules, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_shift_number(monitoring_oncall_schedules, timestamptz) TO monitoring_reader, monitoring_admin;

-- When a shift begins: the local wall-clock time, converted in the schedule's zone (so DST is honoured).
CREATE OR REPLACE FUNCTION _monitoring_shift_start(p_schedule monitoring_oncall_schedules, p_shift bigint)
RETURNS timestamptz
LANGUAGE sql STABLE
AS $$
    SELECT (public._monitoring_first_handoff(p_schedule) + p_shift * p_schedule.rotation_length)
           AT TIME ZONE p_schedule.time_zone
$$;
REVOKE ALL ON FUNCTION _monitoring_shift_start(monitoring_oncall_schedules, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_shift_start(monitoring_oncall_schedules, bigint) TO monitoring_reader, monitoring_admin;

CREATE OR REPLACE FUNCTION _monitoring_rotation_person(p_schedule monitoring_oncall_schedules, p_shift bigint)
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
REVOKE ALL ON FUNCTION _monitoring_rotation_person(monitoring_oncall_schedules, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_rotation_person(monitoring_oncall_schedules, bigint) TO monitoring_reader, monitoring_admin;

CREATE OR REPLACE FUNCTION _monitoring_get_schedule(p_schedule text)
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
REVOKE ALL ON FUNCTION _monitoring_get_schedule(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_get_schedule(text) TO monitoring_reader, monitoring_admin;

-- An address as everyone but its person and the admins sees it (a person's email and phone here, a contact method's
-- address in sql/paging.sql): enough to tell two apart, never enough to use.
-- A push topic is a password on a public ntfy server (whoever knows it reads its pages, Acknowledge links
-- included), so it keeps two characters; a number its country code and last two digits.
CREATE OR REPLACE FUNCTION monitoring_mask_contact_address(p_kind text, p_address text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE p_kind
               WHEN 'sms' THEN left(p_address, 2) || ' ••• ••• ' || right(p_address, 2)
               WHEN 'voice' THEN left(p_address, 2) || ' ••• ••• ' || right(p_address, 2)
               WHEN 'push' THEN 'ntfy: ••••' || right(p_address, 2)
               WHEN 'email' THEN left(p_address, 1) || '•••@' || split_part(p_address, '@', 2)
               ELSE left(p_address, 1) || '••••' || right(p_address, 2)
           END
$$;
COMMENT ON FUNCTION monitoring_mask_contact_address(text, text) IS
'A contact address (a contact method''s, a person''s email or phone) masked, as readers, the console''s other
users and alert timelines see it:
+1 ••• ••• 23 (sms, voice), ntfy: ••••ab (push), a•••@example.com (email), U••••9Z (slack).';
REVOKE ALL ON FUNCTION monitoring_mask_contact_address(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_mask_contact_address(text, text) TO monitoring_reader, monitoring_dispatcher;

-- A person's email and phone are their secrets, as a contact method's address is (sql/paging.sql): whole for a
-- login that may read them in monitoring_people (admins, the dispatcher), masked for everyone else. The login
-- decides (session_user): this function runs as its owner, to mask what its caller may not read.
CREATE OR REPLACE FUNCTION monitoring_who_is_on_call(p_schedule text, p_at timestamptz DEFAULT now())
RETURNS TABLE (person text, slack_member_id text, email text, phone text, is_override boolean, shift_ends_at timestamptz)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_schedule public.monitoring_oncall_schedules := public._monitoring_get_schedule(p_schedule);
    v_shift bigint := public._monitoring_shift_number(v_schedule, p_at);
    v_override public.monitoring_oncall_overrides;
    v_whole boolean := pg_catalog.has_column_privilege(session_user, 'public.monitoring_people', 'email', 'SELECT')
        AND pg_catalog.has_column_privilege(session_user, 'public.monitoring_people', 'phone', 'SELECT');
BEGIN
    SELECT * INTO v_override FROM public.monitoring_oncall_overrides AS o
    WHERE o.schedule_id = v_schedule.id AND o.during @> p_at;
    RETURN QUERY
    SELECT pp.name, pp.slack_member_id,
           CASE WHEN v_whole THEN pp.email ELSE public.monitoring_mask_contact_address('email', pp.email) END,
           CASE WHEN v_whole THEN pp.phone ELSE public.monitoring_mask_contact_address('sms', pp.phone) END,
           v_override.id IS NOT NULL,
           CASE WHEN v_override.id IS NOT NULL THEN upper(v_override.during)
                ELSE public._monitoring_shift_start(v_schedule, v_shift + 1) END
    FROM public.monitoring_people AS pp
    WHERE pp.id = coalesce(v_override.person_id, public._monitoring_rotation_person(v_schedule, v_shift));
END
$$;
COMMENT ON FUNCTION monitoring_who_is_on_call(text, timestamptz) IS
'The person on call for a schedule at p_at: an override covering p_at first, else the rotation''s person for
that shift (computed on the schedule''s local clock, so handoffs keep their local time across DST), with when
their turn ends. Their email and phone are whole for admins and the dispatcher, masked for everyone else
(monitoring_mask_contact_address).';
REVOKE ALL ON FUNCTION monitoring_who_is_on_call(text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_who_is_on_call(text, timestamptz)
TO monitoring_reader, monitoring_admin, monitoring_dispatcher;

CREATE OR REPLACE FUNCTION monitoring_oncall_timeline(p_schedule text, p_from timestamptz DEFAULT now(), p_to timestamptz DEFAULT now() + interval '28 days')
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
REVOKE ALL ON FUNCTION monitoring_oncall_timeline(text, timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_oncall_timeline(text, timestamptz, timestamptz) TO monitoring_reader, monitoring_admin;

-- Handoffs: a Slack message naming who is now on call, once per schedule and shift.
CREATE OR REPLACE FUNCTION _monitoring_announce_handoffs(p_at timestamptz)
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
        -- only a later shift is news: a call at an earlier time (a backfill, a test) must not announce again
        CONTINUE WHEN v_schedule.last_announced_shift >= v_shift;
        UPDATE public.monitoring_oncall_schedules AS s SET last_announced_shift = v_shift WHERE s.id = v_schedule.id;
        CONTINUE WHEN v_schedule.last_announced_shift IS NULL;  -- a new schedule starts quietly
        SELECT * INTO v_person FROM public.monitoring_who_is_on_call(v_schedule.name, p_at);
        INSERT INTO public.monitoring_alerts (alert_type, severity, title, message, source, dedup_key, created_at, occurred_at)
        VALUES ('oncall_handoff', 'info',
                format('%s is now on call for %s', v_person.person, v_schedule.name),
                format('Until %s.', v_person.shift_ends_at AT TIME ZONE v_schedule.time_zone) ||
                CASE WHEN v_person.slack_member_id IS NOT NULL THEN format(' <@%s>', v_person.slack_member_id) ELSE '' END,
                v_schedule.name, format('oncall_handoff:%s:%s', v_schedule.name, v_shift), p_at, p_at)
        RETURNING id INTO v_alert;  -- an announcement, not an incident: sent, and closed at once (sql/alerts.sql)
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_announce_handoffs(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_announce_handoffs(timestamptz) TO monitoring_admin;
