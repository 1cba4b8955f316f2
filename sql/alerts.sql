-- Alerts: what an INSERT into monitoring_alerts does, and an alert's life after it (acknowledge, resolve, reopen).
--
-- Owns: monitoring_alerts
-- Anything may INSERT an alert, as an app does (pgalert raises its own alerts that way: a rule it took out of
-- force, an escalation nobody answered, a page that failed everywhere); only this file changes or deletes one.
--
-- A BEFORE INSERT trigger validates the row and folds a repeat into the open alert with its dedup key (under an
-- advisory lock on the key; the partial unique index one_open_alert_per_dedup_key is the invariant); one AFTER
-- INSERT statement trigger hands the new alerts to each concern in turn (flapping, holds, grouping, the outbox,
-- the SLA rows, escalation), each a set-based function of its own file. The lifecycle functions do the same for
-- acknowledge, resolve and reopen.

CREATE OR REPLACE FUNCTION _monitoring_normalize_severity(p_severity text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    CASE lower(btrim(p_severity))
        WHEN 'critical', 'p0' THEN RETURN 'critical';
        WHEN 'warning', 'p1' THEN RETURN 'warning';
        WHEN 'info', 'p2' THEN RETURN 'info';
        ELSE
            RAISE EXCEPTION 'unknown severity %', coalesce(quote_literal(p_severity), 'NULL')
                USING ERRCODE = 'check_violation',
                      HINT = 'severity must be one of critical (P0), warning (P1), info (P2)';
    END CASE;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_normalize_severity(text) FROM PUBLIC;
-- rules are validated as the admin who writes them, and rules take severities in every spelling alerts do
GRANT EXECUTE ON FUNCTION _monitoring_normalize_severity(text) TO monitoring_admin;

-- The key that makes a repeat one alert: the one given, else the alert's type and source. One definition for
-- every path that raises or finds an alert (an INSERT, monitoring_raise_alert, history, pgalert serve). A SQL
-- function of one expression: inlined where it is used, so it costs what the expression cost.
CREATE OR REPLACE FUNCTION _monitoring_dedup_key(p_alert_type text, p_source text, p_dedup_key text)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT coalesce(
        nullif(p_dedup_key, ''),
        p_alert_type || CASE WHEN coalesce(p_source, '') = '' THEN '' ELSE ':' || p_source END
    )
$$;
REVOKE ALL ON FUNCTION _monitoring_dedup_key(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_dedup_key(text, text, text) TO monitoring_admin;

-- An app's details of any JSON kind still page: providers expect an object.
CREATE OR REPLACE FUNCTION _monitoring_details_object(p_details jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE coalesce(jsonb_typeof(p_details), 'null')
        WHEN 'object' THEN p_details
        WHEN 'null' THEN '{}'
        ELSE jsonb_build_object('value', p_details)
    END
$$;
REVOKE ALL ON FUNCTION _monitoring_details_object(jsonb) FROM PUBLIC;

-- The documented limits of an alert, with a clear message before the table's constraints would refuse it
-- with their names. They fit every provider once truncated and keep a row from growing without bound.
CREATE OR REPLACE FUNCTION _monitoring_check_alert_sizes(p_alert monitoring_alerts)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_limit record;
BEGIN
    FOR v_limit IN
        SELECT * FROM (VALUES
            ('alert_type', char_length(p_alert.alert_type), 200, 'characters'),
            ('title', char_length(p_alert.title), 1024, 'characters'),
            ('message', char_length(p_alert.message), 20000, 'characters'),
            ('source', char_length(p_alert.source), 500, 'characters'),
            ('dedup_key', char_length(p_alert.dedup_key), 500, 'characters'),
            ('details', octet_length(p_alert.details::text), 65536, 'bytes of JSON')
        ) AS l (field, size, max_size, unit)
        WHERE l.size > l.max_size
    LOOP
        RAISE EXCEPTION '% is % % long, over the limit of %', v_limit.field, v_limit.size, v_limit.unit, v_limit.max_size
            USING ERRCODE = 'string_data_right_truncation',
                  HINT = 'put long output in a link (details.runbook_url, a log URL) rather than in the alert';
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_check_alert_sizes(monitoring_alerts) FROM PUBLIC;

-- Only the lifecycle functions change an alert's status: they also tell the providers, stop the escalation and
-- keep the SLA row. A plain UPDATE would leave an incident open at PagerDuty and pending triggers going out.
CREATE OR REPLACE FUNCTION _monitoring_alert_status_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan  -- see _monitoring_alert_before_insert
AS $$
BEGIN
    IF coalesce(current_setting('pgalert.lifecycle', TRUE), '') <> 'on' THEN
        RAISE EXCEPTION 'alert %: status changes through monitoring_acknowledge_alert() and monitoring_resolve_alert(), '
                        'not UPDATE', OLD.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'they also tell the providers, stop the escalation and keep the SLA figures, e.g. '
                         'SELECT monitoring_resolve_alert(' || OLD.id || ', ''alice'', ''why'')';
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_alert_status_guard() FROM PUBLIC;

CREATE OR REPLACE TRIGGER monitoring_alerts_status_by_lifecycle
BEFORE UPDATE OF status ON monitoring_alerts
FOR EACH ROW WHEN (old.status IS DISTINCT FROM new.status)
EXECUTE FUNCTION _monitoring_alert_status_guard();
COMMENT ON TRIGGER monitoring_alerts_status_by_lifecycle ON monitoring_alerts IS
'An alert''s status changes only through the lifecycle functions (acknowledge, resolve, reopen), so providers, escalation and SLA always follow.';

CREATE OR REPLACE FUNCTION _monitoring_alert_before_insert()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- The INSERT path's trigger functions keep one plan per connection. With custom plans, PostgreSQL's default,
-- their statements were planned again at every row: forcing generic plans raised the INSERT rate from 0.39-0.43
-- to 0.49-0.51 of a trigger-less table (alternating runs, one process). The plans use the same indexes either
-- way: the lookups are equalities on unique or partial indexes whose predicates are constants.
SET plan_cache_mode = force_generic_plan
-- That one plan is made at the first row, from the statistics of the moment. Statistics of an empty table (a fresh
-- install analysed, or only resolved alerts when the connection first inserted) priced a scan of every open alert
-- the same as the key's lookup, and the plan read the table for each row: a storm went quadratic (20,000 alerts in
-- one INSERT: 23 s against 4 s). Every lookup here has its index, so no plan of this function scans a table.
SET enable_seqscan = off
AS $$
DECLARE
    v_open public.monitoring_alerts;
    v_group public.monitoring_alerts;
    v_new_severity text;
    v_horizon interval;
BEGIN
    IF NEW.alert_type IS NULL OR btrim(NEW.alert_type) = '' THEN
        RAISE EXCEPTION 'alert_type is required'
            USING ERRCODE = 'not_null_violation', HINT = 'a short machine name such as payment_failure';
    END IF;
    IF NEW.title IS NULL OR btrim(NEW.title) = '' THEN
        RAISE EXCEPTION 'title is required'
            USING ERRCODE = 'not_null_violation', HINT = 'a one-line summary a person reads first';
    END IF;
    NEW.severity := public._monitoring_normalize_severity(NEW.severity);
    NEW.message := coalesce(NEW.message, '');
    NEW.source := coalesce(NEW.source, '');
    NEW.details := public._monitoring_details_object(NEW.details);
    -- one expression for the common case; the function that says which field is too long only when one is
    IF char_length(NEW.title) > 1024 OR char_length(NEW.message) > 20000 OR char_length(NEW.alert_type) > 200
       OR char_length(NEW.source) > 500 OR char_length(NEW.dedup_key) > 500
       OR octet_length(NEW.details::text) > 65536 THEN
        PERFORM public._monitoring_check_alert_sizes(NEW);
    END IF;
    NEW.dedup_key := public._monitoring_dedup_key(NEW.alert_type, NEW.source, NEW.dedup_key);
    -- a new alert starts open, whatever the INSERT said; the lifecycle functions move it on
    NEW.status := 'open';
    NEW.occurrence_count := 1;
    NEW.last_seen_at := NEW.created_at;
    NEW.acknowledged_at := NULL; NEW.acknowledged_by := NULL; NEW.acknowledge_note := NULL;
    NEW.resolved_at := NULL; NEW.resolved_by := NULL; NEW.resolve_note := NULL;
    NEW.false_positive := false;
    NEW.reported_occurred_at := NULL;  -- set below, only when a writer's start is clamped
    IF NEW.occurred_at > NEW.created_at THEN
        NEW.occurred_at := NEW.created_at;  -- a clock ahead of the database's cannot make MTTD negative
    END IF;
    -- The database's clock decides unless an admin backfills: an app's time could park an alert in the future
    -- (never resolvable, swallowing every repeat of its key) or so far back that its escalation runs at once.
    -- The login decides (session_user): this function runs as its owner.
    -- Most INSERTs leave both times to their defaults (now()): only a time given is checked.
    IF NEW.created_at > now() + interval '1 minute' THEN
        RAISE EXCEPTION 'created_at % is in the future', NEW.created_at
            USING ERRCODE = 'invalid_parameter_value', HINT = 'leave created_at (p_at) out: it defaults to now()';
    END IF;
    IF (NEW.created_at <> now() OR NEW.occurred_at <> NEW.created_at)
       AND NOT pg_has_role(session_user, 'monitoring_admin', 'USAGE') THEN
        IF NEW.created_at < now() - interval '1 minute' THEN
            RAISE EXCEPTION 'created_at % is not now: writers cannot backdate when an alert was detected', NEW.created_at
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'leave created_at (p_at) out; say when the problem started with occurred_at, or import '
                             'history as monitoring_admin';
        END IF;
        v_horizon := coalesce(
            (SELECT s.value::interval FROM public.monitoring_settings AS s WHERE s.setting = 'alert_time_horizon'),
            interval '7 days'
        );
        -- Never a reason to lose the alert: Alertmanager re-sends a firing alert with its original startsAt, so
        -- a problem firing for longer than the horizon is still news the first time pgalert hears of it. Its start
        -- is clamped to the horizon (escalation and MTTD stay bounded) and the claimed one kept.
        IF NEW.occurred_at < NEW.created_at - v_horizon THEN
            NEW.reported_occurred_at := NEW.occurred_at;
            NEW.occurred_at := NEW.created_at - v_horizon;
        END IF;
    END IF;

    -- Serialize writers of one key so concurrent INSERTs see each other's open alert instead of racing the
    -- unique index. Each plpgsql statement takes a fresh snapshot, so after the lock we see the winner's row.
    PERFORM pg_advisory_xact_lock(1886414689, hashtext(NEW.dedup_key));
    SELECT * INTO v_open
    FROM public.monitoring_alerts AS a
    WHERE a.dedup_key = NEW.dedup_key AND a.status <> 'resolved'
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NEW;
    END IF;
    v_new_severity := CASE
        WHEN array_position(ARRAY['info', 'warning', 'critical'], NEW.severity)
            > array_position(ARRAY['info', 'warning', 'critical'], v_open.severity)
        THEN NEW.severity ELSE v_open.severity
    END;
    -- a flapping alert whose resolve was held fires again
    IF EXISTS (SELECT FROM public.monitoring_flapping AS f WHERE f.alert_id = v_open.id AND f.settled_at IS NULL) THEN
        PERFORM public._monitoring_flap_on_repeat(v_open.id, NEW.created_at);
    END IF;
    UPDATE public.monitoring_alerts
    SET occurrence_count = occurrence_count + 1,
        last_seen_at = greatest(last_seen_at, NEW.created_at),
        title = NEW.title,
        message = NEW.message,
        -- merged, but never past the size limit: then the latest details win
        details = CASE WHEN octet_length((details || NEW.details)::text) <= 65536 THEN details || NEW.details
                       ELSE NEW.details END,
        severity = v_new_severity
    WHERE id = v_open.id;
    -- a repeat that raises the severity reaches the providers of the new severity; the others already know
    -- (a group's member raises its group instead, never itself alone)
    IF v_new_severity <> v_open.severity THEN
        v_group := public._monitoring_group_alert_of(v_open.id);
        IF v_group.id IS NULL THEN
            PERFORM public._monitoring_enqueue(v_open.id, 'trigger');
        ELSIF v_group.status <> 'resolved'
              AND array_position(ARRAY['info', 'warning', 'critical'], v_new_severity)
                  > array_position(ARRAY['info', 'warning', 'critical'], v_group.severity) THEN
            PERFORM public._monitoring_raise_group(v_group.id, v_new_severity);
        END IF;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_alert_before_insert() FROM PUBLIC;

-- A more severe member raises its group: the providers of the new severity hear of the group, after the group
-- wait like the others (sql/grouping.sql).
CREATE OR REPLACE FUNCTION _monitoring_raise_group(p_group_alert_id bigint, p_severity text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE public.monitoring_alerts SET severity = p_severity WHERE id = p_group_alert_id;
    PERFORM public._monitoring_enqueue(p_group_alert_id, 'trigger');
    PERFORM public._monitoring_defer_trigger(p_group_alert_id, public._monitoring_group_wait_until(p_group_alert_id),
                                             TRUE);
END
$$;
REVOKE ALL ON FUNCTION _monitoring_raise_group(bigint, text) FROM PUBLIC;

-- The new alerts of one INSERT statement, handed to each concern in turn. History (inserted as resolved) gets its
-- SLA row, with its own times, and nothing else.
CREATE OR REPLACE FUNCTION _monitoring_alerts_after_insert()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- A many-row INSERT (a backfill, a storm in one statement) is planned against its transition table, and the
-- routing join's estimate passes jit_above_cost: a 10,000-alert INSERT spent 100-130 ms of 1.6 s compiling,
-- and a single-row INSERT never reaches the threshold, so JIT only ever cost time here. The setting holds
-- for everything the trigger calls, the first escalation step included.
SET jit = off
SET plan_cache_mode = force_generic_plan  -- see _monitoring_alert_before_insert
AS $$
DECLARE
    v_new public.monitoring_alerts[] := ARRAY(SELECT a FROM new_alerts AS a);
    -- the alerts pgalert raises about a rule it takes out of force are not held by rules (sql/silences.sql)
    v_rules_apply boolean := coalesce(current_setting('pgalert.disabling_broken_rules', TRUE), '') <> 'on';
    v_flapping boolean;
    v_hygiene boolean;
    v_grouping boolean;
    v_raised record;
    v_error text;
BEGIN
    -- Flapping, holds and grouping decide how the new alerts are notified, never whether: if evaluating them
    -- fails, the rules that cannot be evaluated are taken out of force and the rest evaluated again; failing
    -- twice, the alerts are notified as if no rule were in force. The savepoint is paid only when a rule is.
    FOR v_try IN 1..2 LOOP
        v_flapping := v_rules_apply AND EXISTS (SELECT FROM public.monitoring_flap_rules AS r WHERE r.enabled);
        v_hygiene := v_rules_apply
            AND public._monitoring_hygiene_in_force((SELECT min(a.created_at) FROM new_alerts AS a));
        v_grouping := v_rules_apply AND EXISTS (SELECT FROM public.monitoring_group_rules AS r WHERE r.enabled);
        EXIT WHEN NOT (v_flapping OR v_hygiene OR v_grouping);
        BEGIN
            -- 1. flapping: keys that flap rules watch count their opening; one that flaps is marked
            IF v_flapping THEN
                PERFORM public._monitoring_flap_on_open(
                    ARRAY(SELECT a.id FROM new_alerts AS a WHERE a.status <> 'resolved'));
            END IF;
            -- 2. holds: silences, maintenance windows and inhibition
            IF v_hygiene THEN
                PERFORM public._monitoring_hold_new_alerts(v_new);
            END IF;
            -- 3. grouping: alerts that match a group rule and that nothing holds join their group and are
            -- notified only through it; a group alert, inserted from there, is not grouped again
            IF v_grouping THEN
                FOR v_raised IN
                    SELECT * FROM public._monitoring_group_new_alerts(ARRAY(
                        SELECT a.id FROM new_alerts AS a
                        WHERE a.status <> 'resolved'
                          AND NOT EXISTS (SELECT FROM public.monitoring_alert_groups AS g WHERE g.alert_id = a.id)
                          AND NOT (v_hygiene AND EXISTS (SELECT FROM public.monitoring_notification_holds AS h
                                                         WHERE h.alert_id = a.id AND h.released_at IS NULL))
                    ))
                LOOP
                    PERFORM public._monitoring_raise_group(v_raised.raised_group_id, v_raised.raised_severity);
                END LOOP;
            END IF;
            EXIT;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT;
            IF public._monitoring_disable_broken_rules(v_error) = 0 OR v_try = 2 THEN
                v_flapping := FALSE;
                v_hygiene := FALSE;
                v_grouping := FALSE;
                EXIT;
            END IF;
        END;
    END LOOP;
    -- 4. the outbox: triggers by the routes, held for held alerts, none for a group's members
    PERFORM public._monitoring_enqueue_new_alerts(v_new, v_hygiene, v_grouping);
    -- 5. the SLA rows: a group counts through its members
    PERFORM public._monitoring_sla_open(CASE WHEN v_grouping THEN ARRAY(
        SELECT a FROM unnest(v_new) AS a
        WHERE NOT EXISTS (SELECT FROM public.monitoring_alert_groups AS g WHERE g.alert_id = a.id)) ELSE v_new END);
    -- 6. escalation, for the alerts a policy is assigned to (most escalate nowhere: the probe on the transition
    -- table saves the call, 3.7% of the single-row INSERT rate); a member escalates through its group
    IF EXISTS (SELECT FROM new_alerts AS a
               JOIN public.monitoring_escalation_assignments AS x
                   ON x.alert_type = a.alert_type OR (x.alert_type IS NULL AND x.severity = a.severity)
               WHERE a.status <> 'resolved') THEN
        PERFORM public._monitoring_start_escalations(CASE WHEN v_grouping THEN ARRAY(
            SELECT a FROM unnest(v_new) AS a
            WHERE NOT EXISTS (SELECT FROM public.monitoring_alert_group_members AS m WHERE m.alert_id = a.id))
            ELSE v_new END);
    END IF;
    -- 7. a handoff announcement (sql/oncall.sql) is not an incident: sent, and closed at once without follow-ups
    IF EXISTS (SELECT FROM unnest(v_new) AS a WHERE a.alert_type = 'oncall_handoff' AND a.status <> 'resolved') THEN
        PERFORM set_config('pgalert.lifecycle', 'on', TRUE);  -- the status guard lets this UPDATE through
        UPDATE public.monitoring_alerts AS a SET status = 'resolved', resolved_at = a.created_at, resolved_by = 'pgalert'
        WHERE a.id IN (SELECT n.id FROM unnest(v_new) AS n WHERE n.alert_type = 'oncall_handoff' AND n.status <> 'resolved');
        PERFORM set_config('pgalert.lifecycle', 'off', TRUE);
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_alerts_after_insert() FROM PUBLIC;

CREATE OR REPLACE TRIGGER monitoring_alerts_deduplicate
BEFORE INSERT ON monitoring_alerts
FOR EACH ROW WHEN (new.status IS DISTINCT FROM 'resolved')
EXECUTE FUNCTION _monitoring_alert_before_insert();
COMMENT ON TRIGGER monitoring_alerts_deduplicate ON monitoring_alerts IS
'Validates a new alert and merges a repeat of an open dedup key into that alert (the INSERT then writes no row).';

CREATE OR REPLACE TRIGGER monitoring_alerts_enqueue
AFTER INSERT ON monitoring_alerts
REFERENCING NEW TABLE AS new_alerts
FOR EACH STATEMENT EXECUTE FUNCTION _monitoring_alerts_after_insert();
COMMENT ON TRIGGER monitoring_alerts_enqueue ON monitoring_alerts IS
'Per statement, one call per concern: flapping, holds and grouping, then the outbox rows, SLA rows and escalations of the new alerts.';

CREATE OR REPLACE FUNCTION monitoring_raise_alert(
    p_alert_type text,
    p_severity text,
    p_title text,
    p_message text DEFAULT '',
    p_source text DEFAULT '',
    p_dedup_key text DEFAULT NULL,
    p_details jsonb DEFAULT '{}',
    p_occurred_at timestamptz DEFAULT NULL,
    p_at timestamptz DEFAULT now()
)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id bigint;
BEGIN
    INSERT INTO public.monitoring_alerts
        (alert_type, severity, title, message, source, dedup_key, details, occurred_at, created_at)
    VALUES
        (p_alert_type, p_severity, p_title, p_message, p_source, p_dedup_key, p_details,
         coalesce(p_occurred_at, p_at), p_at)
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        SELECT a.id INTO v_id
        FROM public.monitoring_alerts AS a
        WHERE a.dedup_key = public._monitoring_dedup_key(p_alert_type, p_source, p_dedup_key)
          AND a.status <> 'resolved';
    END IF;
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION monitoring_raise_alert(text, text, text, text, text, text, jsonb, timestamptz, timestamptz) IS
'INSERT an alert and return its id, or the id of the open alert it was deduplicated into. p_at backdates
detection (imports, tests); p_occurred_at defaults to p_at.';
REVOKE ALL ON FUNCTION monitoring_raise_alert(text, text, text, text, text, text, jsonb, timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_raise_alert(text, text, text, text, text, text, jsonb, timestamptz, timestamptz) TO monitoring_writer;

-- History: alerts that are already over are imported without paging anyone.
-- An INSERT with status 'resolved' is a record of the past (from the tool pgalert replaces, or a backfill):
-- it keeps its own times, skips deduplication (an open alert with the same key is a different, current
-- problem), sends nothing to any provider, starts no escalation, and counts in the SLA figures for its window.
-- Any other INSERT is a current problem and pages as before, whatever its occurred_at.

CREATE OR REPLACE FUNCTION _monitoring_alert_history_insert()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan  -- see _monitoring_alert_before_insert
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
    NEW.details := public._monitoring_details_object(NEW.details);
    NEW.dedup_key := public._monitoring_dedup_key(NEW.alert_type, NEW.source, NEW.dedup_key);
    -- one expression for the common case; the function that says which field is too long only when one is
    IF char_length(NEW.title) > 1024 OR char_length(NEW.message) > 20000 OR char_length(NEW.alert_type) > 200
       OR char_length(NEW.source) > 500 OR char_length(NEW.dedup_key) > 500
       OR octet_length(NEW.details::text) > 65536 THEN
        PERFORM public._monitoring_check_alert_sizes(NEW);
    END IF;
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
REVOKE ALL ON FUNCTION _monitoring_alert_history_insert() FROM PUBLIC;

CREATE OR REPLACE TRIGGER monitoring_alerts_history
BEFORE INSERT ON monitoring_alerts
FOR EACH ROW WHEN (new.status = 'resolved')
EXECUTE FUNCTION _monitoring_alert_history_insert();
COMMENT ON TRIGGER monitoring_alerts_history ON monitoring_alerts IS
'An alert inserted as resolved is history (an admin''s import): validated, given its SLA row, never sent.';

-- The life of an alert after its INSERT: acknowledge, resolve and reopen, from every path (SQL, `pgalert serve`
-- for PagerDuty, Opsgenie, Slack and HTTP clients, the console, rules): each tells the providers that heard of the
-- alert, and each concern does its part (holds end, the group follows, escalation stops or resumes).

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
    v_next record;
BEGIN
    IF v_alert.status <> 'open' THEN
        RAISE NOTICE 'alert % is already %; nothing to acknowledge', p_alert_id, v_alert.status;
        RETURN v_alert;
    END IF;
    IF p_at < v_alert.created_at THEN
        RAISE EXCEPTION 'cannot acknowledge alert % at %, before it was created at %', p_alert_id, p_at, v_alert.created_at
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- the escalation ends first: a pg_cron run holding its row updates the SLA row next, which this UPDATE's
    -- trigger would hold (a deadlock)
    PERFORM public._monitoring_end_escalation(p_alert_id, 'acknowledged', p_at);
    PERFORM set_config('pgalert.lifecycle', 'on', TRUE);  -- the status guard lets this UPDATE through
    UPDATE public.monitoring_alerts
    SET status = 'acknowledged', acknowledged_at = p_at, acknowledged_by = p_by, acknowledge_note = p_note,
        acknowledged_via = p_via
    WHERE id = p_alert_id
    RETURNING * INTO v_alert;
    PERFORM set_config('pgalert.lifecycle', 'off', TRUE);
    PERFORM public._monitoring_drop_held(p_alert_id, 'acknowledged', p_at);
    PERFORM public._monitoring_end_person_pages(p_alert_id, 'acknowledged', p_at);
    FOR v_next IN SELECT * FROM public._monitoring_group_follow_ups(p_alert_id, 'acknowledge', p_by, p_note, p_at) LOOP
        PERFORM public._monitoring_acknowledge(v_next.follow_alert_id, v_next.responder, v_next.note, v_next.acted_at,
                                               'group');
    END LOOP;
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
    v_next record;
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
    PERFORM public._monitoring_end_escalation(p_alert_id, 'resolved', p_at);  -- first, as in _monitoring_acknowledge
    PERFORM set_config('pgalert.lifecycle', 'on', TRUE);  -- the status guard lets this UPDATE through
    UPDATE public.monitoring_alerts
    SET status = 'resolved', resolved_at = p_at, resolved_by = p_by, resolve_note = p_note,
        false_positive = coalesce(p_false_positive, false), resolved_via = p_via
    WHERE id = p_alert_id
    RETURNING * INTO v_alert;
    PERFORM set_config('pgalert.lifecycle', 'off', TRUE);
    PERFORM public._monitoring_drop_held(p_alert_id, 'resolved', p_at);
    PERFORM public._monitoring_end_person_pages(p_alert_id, 'resolved', p_at);
    FOR v_next IN SELECT * FROM public._monitoring_group_follow_ups(p_alert_id, 'resolve', p_by, p_note, p_at) LOOP
        PERFORM public._monitoring_resolve(v_next.follow_alert_id, v_next.responder, v_next.note, v_next.false_positive,
                                           v_next.acted_at, 'group');
    END LOOP;
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
-- problem is back (incident.reopened). The first acknowledgement stays on the row (MTTA counts to it), the
-- escalation resumes where it paused, the paused time not counted, and the people it had paged are paged again.
-- The follow-ups already sent become history, so the next acknowledge or resolve reaches the providers again;
-- those not yet sent are dropped.
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
    PERFORM public._monitoring_archive_follow_ups(p_alert_id, 'reopened via ' || p_via || ' by ' || p_by, p_at);
    PERFORM public._monitoring_reopen_group(p_alert_id);
    -- open again: a silence or window in force holds it before its escalation resumes
    PERFORM public._monitoring_hold_open_alerts(p_at, ARRAY[p_alert_id]);
    PERFORM public._monitoring_resume_escalation(p_alert_id, v_paused_at, p_at);
    -- nobody owns it again: the people its acknowledge or resolve stopped paging are paged again, from now
    PERFORM public._monitoring_page_again(p_alert_id, 'the alert was reopened', p_at);
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

CREATE OR REPLACE FUNCTION monitoring_settle_flapping(p_at timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_episode record;
    v_settled integer := 0;
BEGIN
    -- sql/flapping.sql settles the episodes that are due; what that means for each alert is done here
    FOR v_episode IN
        SELECT s.*, a.status AS alert_status, a.created_at AS alert_created_at, a.acknowledged_at
        FROM public._monitoring_settle_flaps(p_at) AS s
        JOIN public.monitoring_alerts AS a ON a.id = s.flapping_alert_id
        ORDER BY s.episode_id
    LOOP
        v_settled := v_settled + 1;
        IF v_episode.alert_status = 'resolved' THEN
            CONTINUE;
        ELSIF v_episode.last_word = 'resolved' THEN
            -- the resolve it held, at that resolve's own time: MTTR is not stretched by the settling
            PERFORM public._monitoring_resolve(
                v_episode.flapping_alert_id, v_episode.held_resolve ->> 'by', v_episode.held_resolve ->> 'note',
                (v_episode.held_resolve ->> 'false_positive')::boolean,
                greatest((v_episode.held_resolve ->> 'at')::timestamptz, v_episode.alert_created_at, v_episode.acknowledged_at),
                v_episode.held_resolve ->> 'via');
        ELSE
            -- still firing: one more notification, to the providers that heard of it, that says it stopped flapping
            PERFORM public._monitoring_notify_again(ARRAY[v_episode.flapping_alert_id],
                                                    ARRAY['stopped flapping ' || v_episode.episode_id]);
        END IF;
    END LOOP;
    RETURN v_settled;
END
$$;
COMMENT ON FUNCTION monitoring_settle_flapping(timestamptz) IS
'Settle the flapping alerts whose key has not changed state for their rule''s settle_after: resolve those whose
last word was a resolve (at its own time), and notify the others once more as still firing. Returns how many
settled. pg_cron runs it every minute.';
REVOKE ALL ON FUNCTION monitoring_settle_flapping(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_settle_flapping(timestamptz) TO monitoring_admin;

-- Alerts resolved before p_before, with their deliveries, attempts and inbound actions (the foreign keys
-- cascade); returns how many. Open and acknowledged alerts are never purged (sql/retention.sql).
CREATE OR REPLACE FUNCTION _monitoring_purge_alerts(p_before timestamptz)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH purged AS (
        DELETE FROM public.monitoring_alerts
        WHERE status = 'resolved' AND resolved_at < p_before
        RETURNING 1
    )
    SELECT count(*) FROM purged
$$;
REVOKE ALL ON FUNCTION _monitoring_purge_alerts(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_purge_alerts(timestamptz) TO monitoring_admin;
