-- Silences, maintenance windows and inhibition, and the holds they put on an alert's notifications (notification
-- hygiene, docs/hygiene.md). Which alerts a rule matches is sql/matchers.sql's.
--
-- The rules, decided here so that every dispatcher agrees:
-- - an alert is always stored, deduplicated and counted; what a hold stops is its trigger deliveries (status
--   held) and its escalation, from its INSERT (at the alert's created_at);
-- - a silence or window that comes into force holds the open alerts it matches from then on (a silence from when
--   it is made, or its start; a window from the minute it opens): what they have queued and not yet sent, their
--   escalation's steps, their pages to people and their renotifications wait. One definition of what a silence
--   holds: the open alerts it matches, each with a row here (the preview, the counts and badges read these);
-- - a held trigger becomes pending when nothing holds the alert any more and the alert is still open: the
--   cause ended (monitoring_release_holds, every minute and whenever a silence is expired or an inhibiting
--   alert resolves), and the escalation and pages to people resume where they stood, the held time not counted;
-- - an alert acknowledged or resolved while held is never notified: its held triggers are skipped, and no
--   provider that never heard of it is told of its end;
-- - a resolve or acknowledge of an alert whose trigger went out is never held, whatever silences say: no
--   provider is left with an incident pgalert closed (the gap of alertmanager#3664);
-- - every hold and release is a row of monitoring_notification_holds.
--
-- Owns: monitoring_notification_holds, monitoring_silences, monitoring_maintenance_windows,
--       monitoring_inhibit_rules, monitoring_inhibit_sources, monitoring_group_rules, monitoring_flap_rules
-- (the rules' tables: admins write them; pgalert itself only takes a rule it cannot evaluate out of force.)

CREATE OR REPLACE FUNCTION monitoring_rebuild_rule_gates()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE public.monitoring_silences SET gate = public._monitoring_matchers_gate(matchers)
    WHERE gate IS DISTINCT FROM public._monitoring_matchers_gate(matchers);
    UPDATE public.monitoring_inhibit_rules
    SET source_gate = public._monitoring_matchers_gate(source_matchers),
        target_gate = public._monitoring_matchers_gate(target_matchers)
    WHERE source_gate IS DISTINCT FROM public._monitoring_matchers_gate(source_matchers)
       OR target_gate IS DISTINCT FROM public._monitoring_matchers_gate(target_matchers);
    RETURN public._monitoring_rebuild_regex_prefilters();
END
$$;
COMMENT ON FUNCTION monitoring_rebuild_rule_gates() IS
'Set the gates of silences and inhibit rules from their matchers and build monitoring_regex_prefilters again from
the rules in force; returns how many fields have a prefilter. pgalert keeps both current itself (triggers on the rule
tables); this is for after a restore or an import with triggers off, and migrate runs it. Until then a stale gate or
prefilter can only make a rule miss an alert, which is paged.';
REVOKE ALL ON FUNCTION monitoring_rebuild_rule_gates() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_rebuild_rule_gates() TO monitoring_admin;

-- Who made or ended a silence or window is the database login that did, whatever the statement says: a name it
-- gives (a console acting for a person) is kept after the login's, as a claim. A silence ends within
-- silence_max_duration (monitoring_settings, 30 days unless set) of when it is made or extended: one
-- forgotten for a year silences a service for a year. Longer or recurring holds are maintenance windows.
CREATE OR REPLACE FUNCTION _monitoring_accountable(p_claimed text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN nullif(btrim(p_claimed), '') IS NULL OR p_claimed = session_user THEN session_user::text
                ELSE session_user || ' for ' || left(p_claimed, 200) END
$$;
REVOKE ALL ON FUNCTION _monitoring_accountable(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_accountable(text) TO monitoring_admin;

CREATE OR REPLACE FUNCTION _monitoring_record_accountable()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_longest interval;
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.created_by := public._monitoring_accountable(NEW.created_by);
    ELSE
        NEW.created_by := OLD.created_by;
    END IF;
    IF TG_TABLE_NAME <> 'monitoring_silences' THEN
        RETURN NEW;
    END IF;
    NEW.expired_by := CASE
        WHEN NEW.expired_at IS NULL THEN NULL
        WHEN OLD.expired_at IS NULL THEN public._monitoring_accountable(NEW.expired_by)  -- OLD is NULL on INSERT
        ELSE OLD.expired_by
    END;
    IF TG_OP = 'INSERT' OR NEW.ends_at IS DISTINCT FROM OLD.ends_at THEN
        v_longest := coalesce(
            (SELECT s.value::interval FROM public.monitoring_settings AS s WHERE s.setting = 'silence_max_duration'),
            interval '30 days'
        );
        IF NEW.ends_at > now() + v_longest THEN
            RAISE EXCEPTION 'a silence may end at most % from now, not at %', v_longest, NEW.ends_at
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'a longer or recurring hold is a maintenance window (monitoring_maintenance_windows); '
                             'the limit is silence_max_duration in monitoring_settings';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_record_accountable() FROM PUBLIC;

CREATE OR REPLACE TRIGGER record_accountable BEFORE INSERT OR UPDATE ON monitoring_silences
FOR EACH ROW EXECUTE FUNCTION _monitoring_record_accountable();
COMMENT ON TRIGGER record_accountable ON monitoring_silences IS
'created_by and expired_by name the login that did it; a silence ends within silence_max_duration.';
CREATE OR REPLACE TRIGGER record_accountable BEFORE INSERT OR UPDATE ON monitoring_maintenance_windows
FOR EACH ROW EXECUTE FUNCTION _monitoring_record_accountable();
COMMENT ON TRIGGER record_accountable ON monitoring_maintenance_windows IS
'created_by names the login that made the window, whatever the INSERT says.';

-- A rule that cannot be evaluated must never stop an alert or its page. Rows are checked when saved, but a row
-- saved by an older release, restored with triggers off, or whose time zone left the tz database can still
-- fail. When evaluating fails, this takes every such rule out of force (a silence is expired, a window or rule
-- disabled), raises one alert about each, and returns how many; the caller then evaluates again without them,
-- or notifies as if no rule were in force. An error it can pin on no rule is raised as an alert too.
CREATE OR REPLACE FUNCTION _monitoring_disable_broken_rules(p_error text)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rule record;
    v_why text;
    v_broken integer := 0;
BEGIN
    -- the alerts raised from here (an INSERT, as an app raises one) are stored and sent, but no rule is evaluated
    -- for them (sql/alerts.sql)
    PERFORM set_config('pgalert.disabling_broken_rules', 'on', TRUE);
    FOR v_rule IN
        SELECT 'silence' AS kind, s.id, 'silence ' || s.id AS label,
               s.matchers, 'matchers' AS matchers_name, NULL::jsonb AS target_matchers, NULL::text AS time_zone
        FROM public.monitoring_silences AS s WHERE s.expired_at IS NULL AND s.ends_at > now()
        UNION ALL
        SELECT 'maintenance window', w.id, 'maintenance window ' || w.name, w.matchers, 'matchers', NULL, w.time_zone
        FROM public.monitoring_maintenance_windows AS w WHERE w.enabled
        UNION ALL
        SELECT 'inhibit rule', r.id, 'inhibit rule ' || r.name, r.source_matchers, 'source_matchers',
               r.target_matchers, NULL
        FROM public.monitoring_inhibit_rules AS r WHERE r.enabled
        UNION ALL
        SELECT 'group rule', g.id, 'group rule ' || g.name, g.matchers, 'matchers', NULL, NULL
        FROM public.monitoring_group_rules AS g WHERE g.enabled
        UNION ALL
        SELECT 'flap rule', f.id, 'flap rule ' || f.name, f.matchers, 'matchers', NULL, NULL
        FROM public.monitoring_flap_rules AS f WHERE f.enabled
        ORDER BY 1, 2  -- one order for every session, so two disabling at once cannot deadlock
    LOOP
        BEGIN
            PERFORM public._monitoring_check_rule(v_rule.matchers, v_rule.matchers_name, v_rule.target_matchers,
                                                  v_rule.time_zone);
            CONTINUE;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_why = MESSAGE_TEXT;
        END;
        CASE v_rule.kind
            WHEN 'silence' THEN
                UPDATE public.monitoring_silences SET expired_at = now(), expired_by = 'pgalert: cannot be evaluated'
                WHERE id = v_rule.id AND expired_at IS NULL;
            WHEN 'maintenance window' THEN
                UPDATE public.monitoring_maintenance_windows SET enabled = FALSE WHERE id = v_rule.id AND enabled;
            WHEN 'inhibit rule' THEN
                UPDATE public.monitoring_inhibit_rules SET enabled = FALSE WHERE id = v_rule.id AND enabled;
            WHEN 'group rule' THEN
                UPDATE public.monitoring_group_rules SET enabled = FALSE WHERE id = v_rule.id AND enabled;
            ELSE
                UPDATE public.monitoring_flap_rules SET enabled = FALSE WHERE id = v_rule.id AND enabled;
        END CASE;
        IF FOUND THEN
            v_broken := v_broken + 1;
            INSERT INTO public.monitoring_alerts (alert_type, severity, title, message, source, dedup_key, details)
            VALUES (
                'pgalert_rule_disabled', 'warning',
                left('pgalert took ' || v_rule.label || ' out of force: it cannot be evaluated', 500),
                'Evaluating ' || v_rule.label || ' failed (' || left(v_why, 500) || '), so alerts were notified '
                || 'without it. Fix its matchers or time zone and enable it again (a silence: create a new one).',
                'pgalert', 'pgalert_rule_disabled:' || v_rule.kind || ':' || v_rule.id,
                jsonb_build_object('rule_kind', v_rule.kind, 'rule_id', v_rule.id, 'error', left(v_why, 500)));
        END IF;
    END LOOP;
    IF v_broken = 0 THEN
        INSERT INTO public.monitoring_alerts (alert_type, severity, title, message, source, dedup_key, details)
        VALUES (
            'pgalert_rule_disabled', 'critical', 'pgalert could not evaluate its notification rules',
            'Silences, maintenance windows, inhibition, grouping or flapping failed with: ' || left(p_error, 500)
            || '. Alerts are notified as if no such rule were in force until this is fixed.',
            'pgalert', 'pgalert_rule_disabled:unexplained', jsonb_build_object('error', left(p_error, 500)));
    END IF;
    PERFORM set_config('pgalert.disabling_broken_rules', '', TRUE);
    RETURN v_broken;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_disable_broken_rules(text) FROM PUBLIC;

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

-- _monitoring_equal_values of four fields or more.
CREATE OR REPLACE FUNCTION _monitoring_equal_values_of_many(p_alert monitoring_alerts, p_fields text[])
RETURNS text[]
LANGUAGE sql IMMUTABLE
AS $$
    SELECT coalesce(array_agg(public._monitoring_alert_field(p_alert, f.field) ORDER BY f.position), '{}')
    FROM unnest(p_fields) WITH ORDINALITY AS f (field, position)
$$;
REVOKE ALL ON FUNCTION _monitoring_equal_values_of_many(monitoring_alerts, text[]) FROM PUBLIC;

-- An alert's values of the fields an inhibit rule's `equal` names, in order: a source and a target are paired
-- when theirs are the same (a field the alert lacks is '', as Alertmanager's missing label).
-- One expression for up to three fields, so that it is inlined where it is used (it is asked per rule at every
-- INSERT while inhibit rules are in force: 0.2 us inlined, 5 us as a function call).
CREATE OR REPLACE FUNCTION _monitoring_equal_values(p_alert monitoring_alerts, p_fields text[])
RETURNS text[]
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE coalesce(cardinality(p_fields), 0)
        WHEN 0 THEN '{}'::text[]
        WHEN 1 THEN ARRAY[public._monitoring_alert_field(p_alert, p_fields[1])]
        WHEN 2 THEN ARRAY[public._monitoring_alert_field(p_alert, p_fields[1]),
                          public._monitoring_alert_field(p_alert, p_fields[2])]
        WHEN 3 THEN ARRAY[public._monitoring_alert_field(p_alert, p_fields[1]),
                          public._monitoring_alert_field(p_alert, p_fields[2]),
                          public._monitoring_alert_field(p_alert, p_fields[3])]
        ELSE public._monitoring_equal_values_of_many(p_alert, p_fields)
    END
$$;
REVOKE ALL ON FUNCTION _monitoring_equal_values(monitoring_alerts, text[]) FROM PUBLIC;

-- The inhibit sources among these alerts, as they are now: each unresolved one that meets an enabled rule's source
-- matchers, with its equal values. Called for new alerts (the INSERT trigger, through _monitoring_hold_new_alerts,
-- with their keys) and for an alert whose fields or status changed (the trigger below, which first forgets what it
-- was).
CREATE OR REPLACE FUNCTION _monitoring_note_inhibit_sources(
    p_alerts monitoring_alerts[], p_keys monitoring_alert_match_keys[] DEFAULT NULL
)
RETURNS void
LANGUAGE plpgsql  -- its plans kept per connection: this runs at INSERTs while an inhibit rule is in force
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- each alert's keys once, whichever side of the join the planner puts the rules on
    WITH keyed AS MATERIALIZED (
        SELECT a AS alert, k.regex_misses, k.gates
        FROM unnest(p_alerts) AS a
        JOIN unnest(coalesce(p_keys, public._monitoring_alerts_match_keys(p_alerts))) AS k ON k.alert_id = a.id
        WHERE a.status <> 'resolved'
    )
    INSERT INTO public.monitoring_inhibit_sources (rule_id, alert_id, equal_values)
    SELECT r.id, (x.alert).id, public._monitoring_equal_values(x.alert, r.equal)
    FROM keyed AS x
    JOIN public.monitoring_inhibit_rules AS r ON r.enabled AND r.source_gate = ANY (x.gates)
    WHERE NOT EXISTS (SELECT FROM public._monitoring_failed_matchers(x.alert, r.source_matchers, x.regex_misses))
    ON CONFLICT DO NOTHING;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_note_inhibit_sources(monitoring_alerts[], monitoring_alert_match_keys[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION monitoring_rebuild_inhibit_sources(p_rule_id bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM public.monitoring_inhibit_sources AS s WHERE p_rule_id IS NULL OR s.rule_id = p_rule_id;
    IF p_rule_id IS NULL THEN
        -- every rule: as for new alerts, each open alert tests only the rules it could meet
        PERFORM public._monitoring_note_inhibit_sources(
            ARRAY(SELECT a FROM public.monitoring_alerts AS a WHERE a.status <> 'resolved'));
    ELSE
        -- one rule (saved or changed): its few regexes stay compiled, so each open alert is simply tested
        INSERT INTO public.monitoring_inhibit_sources (rule_id, alert_id, equal_values)
        SELECT r.id, a.id, public._monitoring_equal_values(a, r.equal)
        FROM public.monitoring_inhibit_rules AS r
        JOIN public.monitoring_alerts AS a ON a.status <> 'resolved'
        WHERE r.id = p_rule_id AND r.enabled
          AND NOT EXISTS (SELECT FROM public._monitoring_failed_matchers(a, r.source_matchers));
    END IF;
    RETURN (SELECT count(*) FROM public.monitoring_inhibit_sources AS s
            WHERE p_rule_id IS NULL OR s.rule_id = p_rule_id);
END
$$;
COMMENT ON FUNCTION monitoring_rebuild_inhibit_sources(bigint) IS
'Build monitoring_inhibit_sources again from the open alerts, for one inhibit rule or (NULL) all; returns how many
sources. pgalert keeps them current itself (rule changes, alerts opening, changing, resolving); this is for after a
restore with triggers off, and migrate runs it.';
REVOKE ALL ON FUNCTION monitoring_rebuild_inhibit_sources(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_rebuild_inhibit_sources(bigint) TO monitoring_admin;

-- A rule saved, changed, enabled or disabled: its sources are found again among the open alerts.
CREATE OR REPLACE FUNCTION _monitoring_inhibit_rule_changed()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM public.monitoring_rebuild_inhibit_sources(NEW.id);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_inhibit_rule_changed() FROM PUBLIC;

CREATE OR REPLACE TRIGGER monitoring_inhibit_rules_sources
AFTER INSERT OR UPDATE OF source_matchers, equal, enabled ON monitoring_inhibit_rules
FOR EACH ROW EXECUTE FUNCTION _monitoring_inhibit_rule_changed();
COMMENT ON TRIGGER monitoring_inhibit_rules_sources ON monitoring_inhibit_rules IS
'A rule saved or changed finds its sources among the open alerts again (monitoring_inhibit_sources).';

-- An alert whose status or matchable fields changed (acknowledged, resolved, reopened; a repeat that merged new
-- labels or raised the severity; an admin's edit): its inhibit sources follow. A rule that cannot be evaluated
-- is taken out of force rather than failing the change.
CREATE OR REPLACE FUNCTION _monitoring_alert_source_changed()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_error text;
BEGIN
    DELETE FROM public.monitoring_inhibit_sources WHERE alert_id = NEW.id;
    IF NEW.status <> 'resolved' AND EXISTS (SELECT FROM public.monitoring_inhibit_rules AS r WHERE r.enabled) THEN
        BEGIN
            PERFORM public._monitoring_note_inhibit_sources(ARRAY[NEW]);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT;
            PERFORM public._monitoring_disable_broken_rules(v_error);
        END;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_alert_source_changed() FROM PUBLIC;

CREATE OR REPLACE TRIGGER monitoring_alerts_inhibit_sources
AFTER UPDATE ON monitoring_alerts
FOR EACH ROW
WHEN (
    old.status IS DISTINCT FROM new.status OR old.details IS DISTINCT FROM new.details
    OR old.severity IS DISTINCT FROM new.severity OR old.alert_type IS DISTINCT FROM new.alert_type
    OR old.source IS DISTINCT FROM new.source OR old.dedup_key IS DISTINCT FROM new.dedup_key
)
EXECUTE FUNCTION _monitoring_alert_source_changed();
COMMENT ON TRIGGER monitoring_alerts_inhibit_sources ON monitoring_alerts IS
'An alert that resolves stops inhibiting; one whose fields change (a repeat''s labels, a raised severity) or that
reopens is a source of the rules it now meets (monitoring_inhibit_sources).';

-- What holds an alert's notifications at p_at: one row per cause, named by its id (cause_id) and labelled for
-- people (held_by). An inhibition is held per source alert, so it lasts while any of them is unresolved.
-- p_misses and p_gates: the alert's _monitoring_match_keys, computed once by the caller. Silences and inhibit rules
-- are read by their gates, so their cost is that of the ones the alert could meet, not of all of them.
CREATE OR REPLACE FUNCTION _monitoring_holds_for(
    p_alert monitoring_alerts, p_at timestamptz, p_misses text[], p_gates text[]
)
RETURNS TABLE (reason text, held_by text, source_alert_id bigint, cause_id bigint)
LANGUAGE sql STABLE
AS $$
    SELECT 'silence', 'silence ' || s.id, NULL::bigint, s.id
    FROM public.monitoring_silences AS s
    WHERE s.gate = ANY (p_gates) AND s.expired_at IS NULL AND s.starts_at <= p_at AND s.ends_at > p_at
      AND NOT EXISTS (SELECT FROM public._monitoring_failed_matchers(p_alert, s.matchers, p_misses))
    UNION ALL
    SELECT 'maintenance', 'maintenance window ' || w.name, NULL, w.id
    FROM public.monitoring_maintenance_windows AS w
    WHERE public._monitoring_window_is_open(w, p_at)
      AND NOT EXISTS (SELECT FROM public._monitoring_failed_matchers(p_alert, w.matchers, p_misses))
    UNION ALL
    -- an inhibition: per rule whose target gate the alert opens, its sources whose equal values are the alert's,
    -- found by index (monitoring_inhibit_sources, kept below), so the cost is the rules', never the open alerts';
    -- the target matchers are tested only where a source was found (the OFFSET 0s keep that order)
    SELECT 'inhibition', 'inhibit rule ' || c.name || ': alert ' || c.source_id, c.source_id, c.rule_id
    FROM (
        SELECT r.id AS rule_id, r.name, r.source_matchers, r.target_matchers, s.alert_id AS source_id
        FROM public.monitoring_inhibit_rules AS r
        CROSS JOIN LATERAL (
            SELECT s.alert_id FROM public.monitoring_inhibit_sources AS s
            WHERE s.rule_id = r.id AND s.equal_values = public._monitoring_equal_values(p_alert, r.equal)
              AND s.alert_id <> p_alert.id
            OFFSET 0
        ) AS s
        -- most of the time no inhibiting alert is open at all: one probe, not one per rule
        WHERE r.enabled AND r.target_gate = ANY (p_gates) AND EXISTS (SELECT FROM public.monitoring_inhibit_sources)
        OFFSET 0
    ) AS c
    JOIN public.monitoring_alerts AS src ON src.id = c.source_id
    WHERE NOT EXISTS (SELECT FROM public._monitoring_failed_matchers(p_alert, c.target_matchers, p_misses))
      -- an alert on both sides cannot be inhibited by another on both sides (nor by itself); tested exactly, with
      -- no prefilter: a prefilter behind the rules may only ever let an alert be paged, never hold it
      AND NOT (NOT EXISTS (SELECT FROM public._monitoring_failed_matchers(p_alert, c.source_matchers))
               AND NOT EXISTS (SELECT FROM public._monitoring_failed_matchers(src, c.target_matchers)))
$$;
REVOKE ALL ON FUNCTION _monitoring_holds_for(monitoring_alerts, timestamptz, text[], text[]) FROM PUBLIC;

-- The inhibitions in force among p_alert_ids: who (target) is held by whom (source). Inlined where it is used.
CREATE OR REPLACE FUNCTION _monitoring_inhibitions_among(p_alert_ids bigint[])
RETURNS TABLE (target bigint, source bigint)
LANGUAGE sql STABLE
AS $$
    -- joins, not `= ANY`: a storm's 20,000 ids would be searched one by one for each hold
    SELECT h.alert_id, h.source_alert_id
    FROM unnest(p_alert_ids) AS target (id)
    JOIN public.monitoring_notification_holds AS h ON h.alert_id = target.id
    JOIN unnest(p_alert_ids) AS source (id) ON source.id = h.source_alert_id
    WHERE h.reason = 'inhibition' AND h.released_at IS NULL
$$;
REVOKE ALL ON FUNCTION _monitoring_inhibitions_among(bigint[]) FROM PUBLIC;

-- An alert is never held only by alerts it holds. Holds made at one INSERT point at older alerts, except between
-- the alerts of one statement: two symmetric inhibit rules and both alerts raised together would hold each other
-- for ever, nobody paged. Among p_alert_ids, the earliest alert on a cycle of inhibitions is let go of the holds
-- by alerts on that cycle, until no cycle is left; what it released, it returns.
CREATE OR REPLACE FUNCTION _monitoring_break_inhibition_cycles(p_alert_ids bigint[], p_at timestamptz)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_alert_id bigint;
    v_released integer := 0;
    v_count integer;
BEGIN
    -- most statements' holds point at older alerts only: no cycle to look for
    IF NOT EXISTS (SELECT FROM public._monitoring_inhibitions_among(p_alert_ids)) THEN
        RETURN 0;
    END IF;
    LOOP
        WITH RECURSIVE reach (start, node) AS (
            SELECT e.target, e.source FROM public._monitoring_inhibitions_among(p_alert_ids) AS e
            UNION
            SELECT r.start, e.source
            FROM reach AS r JOIN public._monitoring_inhibitions_among(p_alert_ids) AS e ON e.target = r.node
        )
        SELECT min(r.start) INTO v_alert_id FROM reach AS r WHERE r.start = r.node;
        EXIT WHEN v_alert_id IS NULL;
        -- its holds by the alerts that (through others) it holds
        WITH RECURSIVE held_by_it (node) AS (
            SELECT e.target FROM public._monitoring_inhibitions_among(p_alert_ids) AS e WHERE e.source = v_alert_id
            UNION
            SELECT e.target
            FROM held_by_it AS r JOIN public._monitoring_inhibitions_among(p_alert_ids) AS e ON e.source = r.node
        )
        UPDATE public.monitoring_notification_holds AS h
        SET released_at = p_at, release_reason = 'its source is held by it'
        WHERE h.alert_id = v_alert_id AND h.reason = 'inhibition' AND h.released_at IS NULL
          AND h.source_alert_id IN (SELECT node FROM held_by_it);
        GET DIAGNOSTICS v_count = ROW_COUNT;
        v_released := v_released + v_count;
    END LOOP;
    RETURN v_released;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_break_inhibition_cycles(bigint[], timestamptz) FROM PUBLIC;

-- New alerts: what holds each one's notifications, from its INSERT; among alerts of one statement that inhibit
-- each other, one is let go (one alert alone cannot: it is never its own source). Called by the INSERT trigger.
CREATE OR REPLACE FUNCTION _monitoring_hold_new_alerts(p_alerts monitoring_alerts[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_keys public.monitoring_alert_match_keys[] := public._monitoring_alerts_match_keys(p_alerts);
BEGIN
    -- the new alerts that can inhibit are sources first: one statement's alerts may inhibit each other
    IF EXISTS (SELECT FROM public.monitoring_inhibit_rules AS r WHERE r.enabled) THEN
        PERFORM public._monitoring_note_inhibit_sources(p_alerts, v_keys);
    END IF;
    INSERT INTO public.monitoring_notification_holds (alert_id, reason, held_by, source_alert_id, cause_id, held_at)
    SELECT a.id, h.reason, h.held_by, h.source_alert_id, h.cause_id, a.created_at
    FROM unnest(p_alerts) AS a
    JOIN unnest(v_keys) AS k ON k.alert_id = a.id
    CROSS JOIN LATERAL public._monitoring_holds_for(a, a.created_at, k.regex_misses, k.gates) AS h
    WHERE a.status <> 'resolved'
    ON CONFLICT DO NOTHING;
    IF cardinality(p_alerts) > 1 THEN
        PERFORM public._monitoring_break_inhibition_cycles(
            ARRAY(SELECT a.id FROM unnest(p_alerts) AS a), (SELECT min(a.created_at) FROM unnest(p_alerts) AS a));
    END IF;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_hold_new_alerts(monitoring_alerts[]) FROM PUBLIC;

-- Open alerts that silences and maintenance windows in force at p_at match and do not hold yet: held from p_at
-- (pg_cron's minute: a window that opened, a silence that started, an alert that reopened), with what they have
-- queued and not yet sent. Inhibition holds only from an alert's INSERT. Returns the alerts it came to hold.
CREATE OR REPLACE FUNCTION _monitoring_hold_open_alerts(p_at timestamptz, p_alert_ids bigint[] DEFAULT NULL)
RETURNS bigint[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_held bigint[];
BEGIN
    IF NOT (EXISTS (SELECT FROM public.monitoring_silences AS s
                    WHERE s.expired_at IS NULL AND s.starts_at <= p_at AND s.ends_at > p_at)
            OR EXISTS (SELECT FROM public.monitoring_maintenance_windows AS w
                       WHERE public._monitoring_window_is_open(w, p_at))) THEN
        RETURN NULL;
    END IF;
    WITH held AS (
        INSERT INTO public.monitoring_notification_holds (alert_id, reason, held_by, cause_id, held_at)
        SELECT a.id, h.reason, h.held_by, h.cause_id, p_at
        FROM public.monitoring_alerts AS a
        CROSS JOIN LATERAL public._monitoring_match_keys(a) AS k
        CROSS JOIN LATERAL public._monitoring_holds_for(a, p_at, k.regex_misses, k.gates) AS h
        WHERE a.status = 'open' AND a.created_at <= p_at AND h.reason IN ('silence', 'maintenance')
          AND (p_alert_ids IS NULL OR a.id = ANY (p_alert_ids))
        ON CONFLICT DO NOTHING
        RETURNING alert_id
    )
    SELECT array_agg(DISTINCT held.alert_id) INTO v_held FROM held;
    IF v_held IS NOT NULL THEN
        PERFORM public._monitoring_hold_unsent(v_held);
    END IF;
    RETURN v_held;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_hold_open_alerts(timestamptz, bigint[]) FROM PUBLIC;

-- A silence made (console, CLI, SQL) holds the open alerts it matches at once, from its start (or from an alert's
-- INSERT, if later): not at the next minute, when an escalation step may already have paged. Its matchers are
-- tested exactly, as the preview tests them (the regex prefilters may not be rebuilt yet).
CREATE OR REPLACE FUNCTION _monitoring_silences_hold_open_alerts()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_held bigint[];
BEGIN
    WITH held AS (
        INSERT INTO public.monitoring_notification_holds (alert_id, reason, held_by, cause_id, held_at)
        SELECT a.id, 'silence', 'silence ' || s.id, s.id, greatest(s.starts_at, a.created_at)
        FROM new_silences AS s
        JOIN public.monitoring_alerts AS a ON a.status = 'open'
        WHERE s.expired_at IS NULL AND s.starts_at <= now() AND s.ends_at > greatest(s.starts_at, a.created_at)
          AND NOT EXISTS (SELECT FROM public._monitoring_failed_matchers(a, s.matchers))
        ON CONFLICT DO NOTHING
        RETURNING alert_id
    )
    SELECT array_agg(DISTINCT held.alert_id) INTO v_held FROM held;
    IF v_held IS NOT NULL THEN
        PERFORM public._monitoring_hold_unsent(v_held);
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_silences_hold_open_alerts() FROM PUBLIC;

CREATE OR REPLACE TRIGGER hold_open_alerts
AFTER INSERT ON monitoring_silences
REFERENCING NEW TABLE AS new_silences
FOR EACH STATEMENT EXECUTE FUNCTION _monitoring_silences_hold_open_alerts();
COMMENT ON TRIGGER hold_open_alerts ON monitoring_silences IS
'A new silence that has started holds the open alerts it matches at once (monitoring_notification_holds): their
escalation, pages to people and unsent notifications wait until it ends.';

-- The alert was acknowledged or resolved while held: nobody is to be paged for it any more.
CREATE OR REPLACE FUNCTION _monitoring_drop_held(p_alert_id bigint, p_why text, p_at timestamptz)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT public._monitoring_skip_triggers(p_alert_id, 'held', p_why || ' while its notification was held');
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
    v_ended bigint[];
    v_error text;
BEGIN
    -- the open alerts that silences and windows come to hold (a window that opened); then the causes that have
    -- ended (a concurrent run waits on the row, then finds it released: no double release);
    -- a rule that cannot be evaluated is taken out of force (so its holds end), and if evaluating still fails
    -- every hold ends: an alert is paged rather than held by a rule nobody can evaluate
    FOR v_try IN 1..2 LOOP
        BEGIN
            PERFORM public._monitoring_hold_open_alerts(p_at);
            WITH ended AS (
                UPDATE public.monitoring_notification_holds AS h
                SET released_at = p_at, release_reason = 'ended'
                FROM public.monitoring_alerts AS a
                WHERE a.id = h.alert_id AND h.released_at IS NULL
                  -- the same cause by id (a renamed window or rule still holds); by label only for a hold older
                  -- than cause_id whose cause could not be named (migration 0026)
                  AND NOT EXISTS (SELECT FROM public._monitoring_match_keys(a) AS k
                                  CROSS JOIN LATERAL public._monitoring_holds_for(a, p_at, k.regex_misses, k.gates) AS still
                                  WHERE still.reason = h.reason
                                    AND CASE WHEN h.cause_id IS NULL THEN still.held_by = h.held_by
                                             ELSE still.cause_id = h.cause_id
                                                  AND still.source_alert_id IS NOT DISTINCT FROM h.source_alert_id
                                        END)
                RETURNING h.alert_id
            )
            SELECT array_agg(DISTINCT ended.alert_id) INTO v_ended FROM ended;
            EXIT;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT;
            IF public._monitoring_disable_broken_rules(v_error) = 0 OR v_try = 2 THEN
                WITH ended AS (
                    UPDATE public.monitoring_notification_holds
                    SET released_at = p_at, release_reason = 'rules could not be evaluated'
                    WHERE released_at IS NULL
                    RETURNING alert_id
                )
                SELECT array_agg(DISTINCT ended.alert_id) INTO v_ended FROM ended;
                EXIT;
            END IF;
        END;
    END LOOP;

    -- alerts that nothing holds any more, still open: what they held goes out now, and their escalation and pages
    -- to people resume (an alert whose trigger went out before a silence has nothing held but its escalation)
    v_released := public._monitoring_release_held_triggers();
    v_released := ARRAY(
        SELECT DISTINCT x.alert_id
        FROM unnest(coalesce(v_released, '{}') || coalesce(v_ended, '{}')) AS x (alert_id)
        JOIN public.monitoring_alerts AS a ON a.id = x.alert_id AND a.status = 'open'
        WHERE NOT EXISTS (SELECT FROM public.monitoring_notification_holds AS h
                          WHERE h.alert_id = x.alert_id AND h.released_at IS NULL)
        ORDER BY x.alert_id);
    IF cardinality(v_released) = 0 THEN
        RETURN 0;
    END IF;
    PERFORM public._monitoring_resume_person_pages(v_released, p_at);
    PERFORM public._monitoring_start_released_escalations(v_released, p_at);
    PERFORM pg_notify('monitoring_deliveries', '');
    RETURN cardinality(v_released);
END
$$;
COMMENT ON FUNCTION monitoring_release_holds(timestamptz) IS
'Hold the open alerts that silences and maintenance windows in force at p_at match, then notify the held alerts
whose silences, windows and inhibiting alerts have all ended by p_at and that are still open (their escalation and
pages to people resume where they stood, the held time not counted); returns how many alerts it released. pg_cron
runs it every minute; expiring a silence and resolving an inhibiting alert run it at once.';
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
'Hold the notifications of alerts matching every matcher between p_starts_at and p_ends_at: those raised then,
and those open when it starts (their escalation, pages to people and unsent notifications wait; a resolve of one
whose trigger went out is never held); returns the silence id. E.g. SELECT monitoring_create_silence(''[{"field": "alert_type", "op": "=", "value":
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

-- A silence that has not ended gets a new end (silence_max_duration holds from now, as for a new silence: the
-- accountable trigger); false when it had ended or the new end is past. The caller releases what it no longer holds.
CREATE OR REPLACE FUNCTION _monitoring_extend_silence(p_silence_id bigint, p_ends_at timestamptz)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE public.monitoring_silences SET ends_at = p_ends_at
    WHERE id = p_silence_id AND expired_at IS NULL AND ends_at > now() AND p_ends_at > now();
    RETURN FOUND;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_extend_silence(bigint, timestamptz) FROM PUBLIC;

-- Make or change the maintenance window of that name; the table's checks and its row trigger (matchers, time
-- zone) answer a mistake with their sentences. Returns its id.
CREATE OR REPLACE FUNCTION _monitoring_save_window(
    p_name text, p_matchers jsonb, p_time_zone text, p_starts_at timestamptz, p_ends_at timestamptz,
    p_days_of_week integer[], p_start_time time, p_duration interval, p_comment text, p_created_by text
)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.monitoring_maintenance_windows
        (name, matchers, time_zone, starts_at, ends_at, days_of_week, start_time, duration, comment, created_by)
    VALUES (p_name, p_matchers, coalesce(nullif(p_time_zone, ''), 'UTC'), p_starts_at, p_ends_at, p_days_of_week,
            p_start_time, p_duration, coalesce(p_comment, ''), p_created_by)
    ON CONFLICT (name) DO UPDATE
    SET matchers = excluded.matchers, time_zone = excluded.time_zone, starts_at = excluded.starts_at,
        ends_at = excluded.ends_at, days_of_week = excluded.days_of_week, start_time = excluded.start_time,
        duration = excluded.duration, comment = excluded.comment
    RETURNING id
$$;
REVOKE ALL ON FUNCTION _monitoring_save_window(text, jsonb, text, timestamptz, timestamptz, integer[], time, interval, text, text) FROM PUBLIC;

-- Put the maintenance window of that name in or out of force; an unknown name is an error.
CREATE OR REPLACE FUNCTION _monitoring_set_window_enabled(p_name text, p_enabled boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE public.monitoring_maintenance_windows SET enabled = p_enabled WHERE name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no maintenance window is named %', coalesce(quote_literal(p_name), 'NULL')
            USING ERRCODE = 'no_data_found';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_set_window_enabled(text, boolean) FROM PUBLIC;
