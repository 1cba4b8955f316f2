-- Alerts and deduplication: what an INSERT into monitoring_alerts does.
--
-- A BEFORE INSERT trigger validates the row and folds a repeat into the open alert with its dedup key (under an
-- advisory lock on the key; the partial unique index one_open_alert_per_dedup_key is the invariant); one AFTER
-- INSERT statement trigger writes the outbox, the SLA rows and the first escalation step for every new alert.

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
AS $$
DECLARE
    v_open public.monitoring_alerts;
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
        IF NEW.occurred_at < NEW.created_at - v_horizon THEN
            RAISE EXCEPTION 'occurred_at % is further back than the horizon of % that writers may report',
                NEW.occurred_at, v_horizon
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'an older problem is history: import it as monitoring_admin (setting alert_time_horizon)';
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
    -- (a group's member raises its group instead)
    IF v_new_severity <> v_open.severity AND NOT public._monitoring_member_raised(v_open.id, v_new_severity) THEN
        PERFORM public._monitoring_enqueue(v_open.id, 'trigger');
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_alert_before_insert() FROM PUBLIC;

-- The outbox, SLA row and escalation of new alerts: history gets its SLA row, with its own times, and
-- nothing else.
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
    v_batch record;
    -- the alerts pgalert raises about a rule it takes out of force are not held by rules (sql/hygiene.sql)
    v_rules_apply boolean := coalesce(current_setting('pgalert.disabling_broken_rules', TRUE), '') <> 'on';
    v_flapping boolean;
    v_hygiene boolean;
    v_grouping boolean;
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
            -- keys that flap rules watch: their opening is counted, and one that flaps is marked (sql/flapping.sql)
            IF v_flapping THEN
                PERFORM public._monitoring_flap_on_open(
                    ARRAY(SELECT a.id FROM new_alerts AS a WHERE a.status <> 'resolved'));
            END IF;
            -- silences, maintenance windows and inhibition hold the new alerts' notifications (sql/hygiene.sql)
            IF v_hygiene THEN
                INSERT INTO public.monitoring_notification_holds
                    (alert_id, reason, held_by, source_alert_id, cause_id, held_at)
                SELECT a.id, h.reason, h.held_by, h.source_alert_id, h.cause_id, a.created_at
                FROM new_alerts AS a
                CROSS JOIN LATERAL public._monitoring_holds_for(a, a.created_at) AS h
                WHERE a.status <> 'resolved'
                ON CONFLICT DO NOTHING;
                -- alerts of this statement that inhibit each other: one of them is notified (one alert alone
                -- cannot: it is never its own source)
                IF EXISTS (SELECT FROM new_alerts AS a OFFSET 1) THEN
                    PERFORM public._monitoring_break_inhibition_cycles(
                        ARRAY(SELECT a.id FROM new_alerts AS a), (SELECT min(a.created_at) FROM new_alerts AS a));
                END IF;
            END IF;
            -- alerts that match a group rule and that nothing holds join their group and are notified only
            -- through it (sql/grouping.sql); a group alert, inserted from here, is not grouped again
            IF v_grouping THEN
                PERFORM public._monitoring_group_new_alerts(ARRAY(
                    SELECT a.id FROM new_alerts AS a
                    WHERE a.status <> 'resolved'
                      AND NOT EXISTS (SELECT FROM public.monitoring_alert_groups AS g WHERE g.alert_id = a.id)
                      AND NOT (v_hygiene AND EXISTS (SELECT FROM public.monitoring_notification_holds AS h
                                                     WHERE h.alert_id = a.id AND h.released_at IS NULL))
                ));
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
    INSERT INTO public.monitoring_deliveries (alert_id, provider, action, status)
    SELECT a.id, r.provider, 'trigger',
           CASE WHEN v_hygiene AND EXISTS (
               SELECT FROM public.monitoring_notification_holds AS h WHERE h.alert_id = a.id AND h.released_at IS NULL
           ) THEN 'held' ELSE 'pending' END
    FROM new_alerts AS a
    CROSS JOIN LATERAL public.monitoring_route_providers(a.alert_type, a.severity) AS r (provider)
    WHERE a.status <> 'resolved'
      AND NOT (v_grouping AND EXISTS (SELECT FROM public.monitoring_alert_group_members AS m WHERE m.alert_id = a.id))
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
    WHERE a.alert_type <> 'oncall_handoff'
      -- a group counts through its members
      AND NOT (v_grouping AND EXISTS (SELECT FROM public.monitoring_alert_groups AS g WHERE g.alert_id = a.id));

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
          -- a member escalates through its group
          AND NOT (v_grouping AND EXISTS (SELECT FROM public.monitoring_alert_group_members AS m WHERE m.alert_id = a.id))
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
'Per statement: flapping, holds and grouping, then the outbox rows, SLA rows and escalations of the new alerts.';

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
