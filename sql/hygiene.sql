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
--
-- Owns: monitoring_notification_holds, monitoring_silences, monitoring_maintenance_windows,
--       monitoring_inhibit_rules, monitoring_inhibit_sources, monitoring_regex_prefilters, monitoring_group_rules,
--       monitoring_flap_rules
-- (the rules' tables: admins write them; pgalert itself only takes a rule it cannot evaluate out of force.)

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

-- A matcher's regex as it is evaluated: it matches the whole value, as Alertmanager's do. Alertmanager's (RE2)
-- case-insensitive flag `(?i)` is kept in front, where PostgreSQL accepts embedded options. This is the only
-- place the form is written: the save check compiles exactly this, so a saved regex cannot fail at INSERT time.
CREATE OR REPLACE FUNCTION _monitoring_whole_value_regex(p_regex text)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN left(p_regex, 4) = '(?i)' THEN '(?i)^(?:' || substr(p_regex, 5) || ')$'
                ELSE '^(?:' || p_regex || ')$' END
$$;
REVOKE ALL ON FUNCTION _monitoring_whole_value_regex(text) FROM PUBLIC;

-- The name a regex matcher's prefilter goes by: its field, prefixed by (?i) when the regex is case-insensitive (an
-- alternation can carry an embedded option only in front, so those regexes have an alternation of their own).
CREATE OR REPLACE FUNCTION _monitoring_regex_key(p_matcher jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN left(p_matcher ->> 'value', 4) = '(?i)' THEN '(?i)' ELSE '' END || (p_matcher ->> 'field')
$$;
REVOKE ALL ON FUNCTION _monitoring_regex_key(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_regex_key(jsonb) TO monitoring_admin;

-- The matchers an alert fails; it matches when there is none: NOT EXISTS (SELECT FROM
-- _monitoring_failed_matchers(alert, matchers, misses)). A set-returning SQL function without SET is inlined into
-- the query that uses it, so a hundred silences cost one query, not a hundred function calls (measured: 35 us a
-- call as a boolean function, 6 us inlined).
-- p_misses (regex_misses of the same alert's _monitoring_match_keys) names the fields whose prefilter the alert's
-- value does not match: a =~ matcher on one of them fails without its regex being compiled. NULL tests every
-- regex, as a matcher that is not a rule in force (a preview) must be.
CREATE OR REPLACE FUNCTION _monitoring_failed_matchers(
    p_alert monitoring_alerts, p_matchers jsonb, p_misses text[] DEFAULT NULL
)
RETURNS SETOF jsonb
LANGUAGE sql IMMUTABLE
AS $$
    SELECT m.matcher
    FROM jsonb_array_elements(p_matchers) AS m (matcher)
    CROSS JOIN LATERAL (SELECT public._monitoring_alert_field(p_alert, m.matcher ->> 'field') AS value) AS f
    WHERE NOT CASE m.matcher ->> 'op'
        WHEN '=' THEN f.value = m.matcher ->> 'value'
        WHEN '!=' THEN f.value <> m.matcher ->> 'value'
        WHEN '=~' THEN CASE WHEN public._monitoring_regex_key(m.matcher) = ANY (p_misses) THEN FALSE
                            ELSE f.value ~ public._monitoring_whole_value_regex(m.matcher ->> 'value') END
        WHEN '!~' THEN f.value !~ public._monitoring_whole_value_regex(m.matcher ->> 'value')
    END
$$;
REVOKE ALL ON FUNCTION _monitoring_failed_matchers(monitoring_alerts, jsonb, text[]) FROM PUBLIC;

-- The regex matchers of every rule in force, whatever its kind: what the prefilters stand for.
CREATE OR REPLACE FUNCTION _monitoring_regex_matchers_in_force()
RETURNS TABLE (matcher_key text, field text, regex text)
LANGUAGE sql STABLE
AS $$
    SELECT public._monitoring_regex_key(m.matcher), m.matcher ->> 'field', m.matcher ->> 'value'
    FROM (
        -- every silence not expired, ended by its clock or not: holds are decided at an alert's created_at, which
        -- an import or a late writer may set in the past
        SELECT s.matchers FROM public.monitoring_silences AS s WHERE s.expired_at IS NULL
        UNION ALL
        SELECT w.matchers FROM public.monitoring_maintenance_windows AS w WHERE w.enabled
        UNION ALL
        SELECT r.source_matchers FROM public.monitoring_inhibit_rules AS r WHERE r.enabled
        UNION ALL
        SELECT r.target_matchers FROM public.monitoring_inhibit_rules AS r WHERE r.enabled
        UNION ALL
        SELECT g.matchers FROM public.monitoring_group_rules AS g WHERE g.enabled
        UNION ALL
        SELECT f.matchers FROM public.monitoring_flap_rules AS f WHERE f.enabled
    ) AS rule (matchers)
    CROSS JOIN LATERAL jsonb_array_elements(rule.matchers) AS m (matcher)
    WHERE m.matcher ->> 'op' = '=~'
$$;
REVOKE ALL ON FUNCTION _monitoring_regex_matchers_in_force() FROM PUBLIC;

-- The prefilters, built again whole from the rules in force (a wider alternation than needed only lets more values
-- through to be tested one by one; a narrower one would let a rule miss an alert). An alternation that does not
-- compile as a whole keeps a NULL pattern: its regexes are then tested one by one, as before prefilters, and every
-- one of them compiled alone when it was saved.
CREATE OR REPLACE FUNCTION _monitoring_rebuild_regex_prefilters()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_field record;
    v_pattern text;
    v_count integer := 0;
BEGIN
    -- one build at a time, each reading the rules as committed after the one before it
    PERFORM pg_advisory_xact_lock(1886414690, hashtext('monitoring_regex_prefilters'));
    DELETE FROM public.monitoring_regex_prefilters;
    FOR v_field IN
        SELECT m.matcher_key, m.field, array_agg(DISTINCT m.regex ORDER BY m.regex) AS regexes,
               array_agg(DISTINCT length(public._monitoring_regex_literal_start(m.regex))) AS start_lengths
        FROM public._monitoring_regex_matchers_in_force() AS m
        GROUP BY m.matcher_key, m.field
    LOOP
        -- a leading (?i) is the key's; each alternative in a group of its own, as _monitoring_whole_value_regex
        -- anchors one regex
        v_pattern := public._monitoring_whole_value_regex(
            CASE WHEN left(v_field.matcher_key, 4) = '(?i)' THEN '(?i)' ELSE '' END
            || (SELECT string_agg('(?:' || CASE WHEN left(r.regex, 4) = '(?i)' THEN substr(r.regex, 5) ELSE r.regex END
                                  || ')', '|')
                FROM unnest(v_field.regexes) AS r (regex)));
        BEGIN
            PERFORM '' ~ v_pattern;
        EXCEPTION WHEN OTHERS THEN  -- "regular expression is too complex", out of memory: no prefilter, no harm
            v_pattern := NULL;
        END;
        INSERT INTO public.monitoring_regex_prefilters (matcher_key, field, regexes, start_lengths, pattern)
        VALUES (v_field.matcher_key, v_field.field, cardinality(v_field.regexes), v_field.start_lengths, v_pattern);
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_rebuild_regex_prefilters() FROM PUBLIC;

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

CREATE OR REPLACE FUNCTION _monitoring_rules_changed_rebuild_prefilters()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM public._monitoring_rebuild_regex_prefilters();
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_rules_changed_rebuild_prefilters() FROM PUBLIC;

CREATE OR REPLACE TRIGGER rebuild_regex_prefilters
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON monitoring_silences
FOR EACH STATEMENT EXECUTE FUNCTION _monitoring_rules_changed_rebuild_prefilters();
COMMENT ON TRIGGER rebuild_regex_prefilters ON monitoring_silences IS
'A silence saved, changed or out of force: the regex prefilters are built again (monitoring_regex_prefilters).';
CREATE OR REPLACE TRIGGER rebuild_regex_prefilters
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON monitoring_maintenance_windows
FOR EACH STATEMENT EXECUTE FUNCTION _monitoring_rules_changed_rebuild_prefilters();
COMMENT ON TRIGGER rebuild_regex_prefilters ON monitoring_maintenance_windows IS
'A window saved, changed or out of force: the regex prefilters are built again (monitoring_regex_prefilters).';
CREATE OR REPLACE TRIGGER rebuild_regex_prefilters
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON monitoring_inhibit_rules
FOR EACH STATEMENT EXECUTE FUNCTION _monitoring_rules_changed_rebuild_prefilters();
COMMENT ON TRIGGER rebuild_regex_prefilters ON monitoring_inhibit_rules IS
'An inhibit rule saved, changed or out of force: the regex prefilters are built again (monitoring_regex_prefilters).';
CREATE OR REPLACE TRIGGER rebuild_regex_prefilters
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON monitoring_group_rules
FOR EACH STATEMENT EXECUTE FUNCTION _monitoring_rules_changed_rebuild_prefilters();
COMMENT ON TRIGGER rebuild_regex_prefilters ON monitoring_group_rules IS
'A group rule saved, changed or out of force: the regex prefilters are built again (monitoring_regex_prefilters).';
CREATE OR REPLACE TRIGGER rebuild_regex_prefilters
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON monitoring_flap_rules
FOR EACH STATEMENT EXECUTE FUNCTION _monitoring_rules_changed_rebuild_prefilters();
COMMENT ON TRIGGER rebuild_regex_prefilters ON monitoring_flap_rules IS
'A flap rule saved, changed or out of force: the regex prefilters are built again (monitoring_regex_prefilters).';

-- What an alert brings to matching, computed once per alert and handed to the queries that test rules against it:
-- - regex_misses: the keys (_monitoring_regex_key) of the prefilters its values do not match: a =~ matcher on one
--   of them fails without its regex being compiled (each prefilter is one entry of the connection's regex cache for
--   as long as the rules do not change);
-- - gates: the gates (_monitoring_matchers_gate) it opens; a silence or inhibit rule whose gate is not among them
--   cannot match it, and is not even read: they are found by `gate = ANY (gates)`.
-- A rule change the prefilters missed (a restore with triggers off, until migrate builds them again) can only make
-- a rule fail to match, so an alert is paged rather than held.
CREATE OR REPLACE FUNCTION _monitoring_match_keys(p_alert monitoring_alerts, OUT regex_misses text[], OUT gates text[])
LANGUAGE plpgsql STABLE  -- plpgsql: its two statements planned once per connection, not at every INSERT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    regex_misses := ARRAY(
        SELECT p.matcher_key FROM public.monitoring_regex_prefilters AS p
        WHERE p.pattern IS NOT NULL AND public._monitoring_alert_field(p_alert, p.field) !~ p.pattern);
    gates := ARRAY(
        SELECT '*'
        UNION ALL
        SELECT f.field || '=' || left(f.value, 200)
        FROM (VALUES ('alert_type', p_alert.alert_type), ('severity', p_alert.severity), ('source', p_alert.source),
                     ('dedup_key', p_alert.dedup_key)) AS f (field, value)
        WHERE f.value <> ''
        UNION ALL
        SELECT 'labels.' || l.key || '=' || left(l.value, 200)
        FROM jsonb_each_text(CASE WHEN jsonb_typeof(p_alert.details -> 'labels') = 'object'
                                  THEN p_alert.details -> 'labels' END) AS l
        WHERE l.value <> ''
        UNION ALL
        SELECT 'details.' || d.key || '=' || left(d.value, 200)
        FROM jsonb_each_text(CASE WHEN jsonb_typeof(p_alert.details) = 'object' THEN p_alert.details END) AS d
        WHERE d.value <> ''
        UNION ALL
        -- a regex's gate ends in the literal text it starts with: the value's starts of the lengths the field's
        -- regexes begin with
        SELECT p.matcher_key || '~' || left(v.value, n.length)
        FROM public.monitoring_regex_prefilters AS p
        CROSS JOIN LATERAL (SELECT public._monitoring_alert_field(p_alert, p.field) AS value) AS v
        CROSS JOIN LATERAL unnest(p.start_lengths) AS n (length)
        WHERE p.matcher_key <> ALL (regex_misses) AND n.length <= length(v.value));
END
$$;
REVOKE ALL ON FUNCTION _monitoring_match_keys(monitoring_alerts) FROM PUBLIC;

-- Matchers are checked when they are saved, so matching never fails on a bad regex at INSERT time.
CREATE OR REPLACE FUNCTION _monitoring_check_matchers(p_matchers jsonb, p_what text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SECURITY DEFINER  -- it reads nothing but its arguments; the definer's rights reach the regex form it compiles
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_matcher jsonb;
    v_regex text;
    v_why text;
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
            v_regex := v_matcher ->> 'value';
            IF length(v_regex) > 1000 THEN
                RAISE EXCEPTION '% has a regex of % characters; at most 1000', p_what, length(v_regex)
                    USING ERRCODE = 'invalid_regular_expression';
            END IF;
            -- a back-reference is the one construct whose matching time can explode (and RE2, Alertmanager's
            -- engine, has none): refused, so no saved regex can hold an INSERT for long
            IF v_regex ~ '(^|[^\\])(\\\\)*\\[1-9]' THEN
                RAISE EXCEPTION '% has a regex with a back-reference (\1 ... \9): %', p_what, left(v_regex, 200)
                    USING ERRCODE = 'invalid_regular_expression',
                          HINT = 'Alertmanager''s regexes have none either; spell the alternatives out';
            END IF;
            BEGIN
                -- the form that is evaluated ((?s)x compiles alone, not inside ^(?:...)$), and the bare value, so
                -- that x)|(.* cannot close the anchoring group and match everything
                PERFORM '' ~ public._monitoring_whole_value_regex(v_regex), '' ~ v_regex;
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS v_why = MESSAGE_TEXT;
                RAISE EXCEPTION '% has a regex that does not compile as it is evaluated: % (%)',
                                p_what, left(v_regex, 200), v_why
                    USING ERRCODE = 'invalid_regular_expression',
                          HINT = 'a regex matches the whole value, as ^(?:REGEX)$; of the embedded options only a '
                                 'leading (?i) is accepted';
            END;
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_check_matchers(jsonb, text) FROM PUBLIC;
-- admins write hygiene, group and flap rules with plain INSERTs, and the row trigger calls this as them; a console
-- or CLI may ask it before saving, and the answer is the database's own
GRANT EXECUTE ON FUNCTION _monitoring_check_matchers(jsonb, text) TO monitoring_admin;

-- What a silence, window, inhibit, group or flap rule must pass: checked when it is saved, and again for the rules
-- in force when evaluating them failed (_monitoring_disable_broken_rules), so both ask the same questions.
-- p_target_matchers is an inhibit rule's, p_time_zone a maintenance window's.
CREATE OR REPLACE FUNCTION _monitoring_check_rule(
    p_matchers jsonb, p_matchers_name text, p_target_matchers jsonb DEFAULT NULL, p_time_zone text DEFAULT NULL
)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM public._monitoring_check_matchers(p_matchers, p_matchers_name);
    IF p_target_matchers IS NOT NULL THEN
        PERFORM public._monitoring_check_matchers(p_target_matchers, 'target_matchers');
    END IF;
    IF p_time_zone IS NOT NULL THEN
        PERFORM now() AT TIME ZONE p_time_zone;  -- an unknown zone is refused here, by name
    END IF;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_check_rule(jsonb, text, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_check_rule(jsonb, text, jsonb, text) TO monitoring_admin;

-- The literal text every value a regex matches starts with, up to 30 characters: its leading run of letters,
-- digits and _:/ - (none of them special in a regex), less the last one when a quantifier follows it. '' when it
-- cannot tell: an alternative anywhere, or a leading (?i).
CREATE OR REPLACE FUNCTION _monitoring_regex_literal_start(p_regex text)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN left(p_regex, 4) = '(?i)' OR strpos(p_regex, '|') > 0 THEN ''
                WHEN substr(p_regex, length(l.run) + 1, 1) IN ('?', '*', '+', '{') THEN left(left(l.run, -1), 30)
                ELSE left(l.run, 30) END
    FROM (SELECT substring(p_regex FROM '^[A-Za-z0-9_:/ -]*') AS run) AS l
$$;
REVOKE ALL ON FUNCTION _monitoring_regex_literal_start(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_regex_literal_start(text) TO monitoring_admin;

-- The gate of a list of matchers: one thing an alert must have for them to be worth testing (an alert lists the
-- gates it opens in _monitoring_match_keys, and silences and inhibit rules are looked up by them):
-- - `field=value` from its first equality with a value (its first 200 characters, so that a gate fits an index
--   entry): an alert without that value fails it;
-- - else `field~start` from its first regex, start its literal start: an alert whose value the field's prefilter
--   refuses, or that does not begin with start, fails it (a (?i) regex's field is `(?i)field`, with no start);
-- - else `*`: any alert may match.
CREATE OR REPLACE FUNCTION _monitoring_matchers_gate(p_matchers jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT coalesce(
        (SELECT (e.matcher ->> 'field') || '=' || left(e.matcher ->> 'value', 200)
         FROM jsonb_array_elements(p_matchers) WITH ORDINALITY AS e (matcher, position)
         WHERE e.matcher ->> 'op' = '=' AND e.matcher ->> 'value' <> ''
         ORDER BY e.position LIMIT 1),
        (SELECT public._monitoring_regex_key(e.matcher) || '~'
                || public._monitoring_regex_literal_start(e.matcher ->> 'value')
         FROM jsonb_array_elements(p_matchers) WITH ORDINALITY AS e (matcher, position)
         WHERE e.matcher ->> 'op' = '=~'
         ORDER BY e.position LIMIT 1),
        '*')
$$;
REVOKE ALL ON FUNCTION _monitoring_matchers_gate(jsonb) FROM PUBLIC;
-- the row trigger that sets a rule's gates runs as the admin who saves it
GRANT EXECUTE ON FUNCTION _monitoring_matchers_gate(jsonb) TO monitoring_admin;

-- A rule's matchers are checked when they change, and its gates set from them (whatever the statement said of the
-- gates). Setting the gates of a rule saved unchecked (monitoring_rebuild_rule_gates, after a restore) must work
-- even if its matchers cannot be evaluated: the INSERT that meets it takes it out of force.
CREATE OR REPLACE FUNCTION _monitoring_check_hygiene_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME = 'monitoring_inhibit_rules' THEN
        IF TG_OP = 'INSERT' OR NEW.source_matchers IS DISTINCT FROM OLD.source_matchers
           OR NEW.target_matchers IS DISTINCT FROM OLD.target_matchers THEN
            PERFORM public._monitoring_check_rule(NEW.source_matchers, 'source_matchers', NEW.target_matchers);
        END IF;
        NEW.source_gate := public._monitoring_matchers_gate(NEW.source_matchers);
        NEW.target_gate := public._monitoring_matchers_gate(NEW.target_matchers);
    ELSIF TG_TABLE_NAME = 'monitoring_maintenance_windows' THEN
        PERFORM public._monitoring_check_rule(NEW.matchers, 'matchers', p_time_zone => NEW.time_zone);
    ELSE
        IF TG_OP = 'INSERT' OR NEW.matchers IS DISTINCT FROM OLD.matchers THEN
            PERFORM public._monitoring_check_rule(NEW.matchers, 'matchers');
        END IF;
        IF TG_TABLE_NAME = 'monitoring_silences' THEN
            NEW.gate := public._monitoring_matchers_gate(NEW.matchers);
        END IF;
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_check_hygiene_row() FROM PUBLIC;

-- checked when what is checked changes: disabling or expiring a rule that can no longer be evaluated must work
CREATE OR REPLACE TRIGGER check_matchers BEFORE INSERT OR UPDATE OF matchers, gate ON monitoring_silences
FOR EACH ROW EXECUTE FUNCTION _monitoring_check_hygiene_row();
COMMENT ON TRIGGER check_matchers ON monitoring_silences IS
'Matchers are checked in the form they are evaluated in (a bad one is refused with the reason), and the gate is set
from them.';
CREATE OR REPLACE TRIGGER check_matchers BEFORE INSERT OR UPDATE OF matchers, time_zone ON monitoring_maintenance_windows
FOR EACH ROW EXECUTE FUNCTION _monitoring_check_hygiene_row();
COMMENT ON TRIGGER check_matchers ON monitoring_maintenance_windows IS
'Matchers and the time zone are checked in the form they are evaluated in; a bad one is refused with the reason.';
CREATE OR REPLACE TRIGGER check_matchers
BEFORE INSERT OR UPDATE OF source_matchers, target_matchers, source_gate, target_gate ON monitoring_inhibit_rules
FOR EACH ROW EXECUTE FUNCTION _monitoring_check_hygiene_row();
COMMENT ON TRIGGER check_matchers ON monitoring_inhibit_rules IS
'Source and target matchers are checked in the form they are evaluated in (a bad one is refused with the reason),
and the gates are set from them.';

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

-- The alerts' _monitoring_match_keys, once each, to hand to the statements that test rules against them.
CREATE OR REPLACE FUNCTION _monitoring_alerts_match_keys(p_alerts monitoring_alerts[])
RETURNS monitoring_alert_match_keys[]
LANGUAGE plpgsql STABLE  -- plpgsql: planned once per connection (as sql, at every call: twice the cost)
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN ARRAY(
        SELECT ROW(a.id, k.regex_misses, k.gates)::public.monitoring_alert_match_keys
        FROM unnest(p_alerts) AS a
        CROSS JOIN LATERAL public._monitoring_match_keys(a) AS k
    );
END
$$;
REVOKE ALL ON FUNCTION _monitoring_alerts_match_keys(monitoring_alerts[]) FROM PUBLIC;

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
    v_error text;
BEGIN
    -- the causes that have ended (a concurrent run waits on the row, then finds it released: no double release);
    -- a rule that cannot be evaluated is taken out of force (so its holds end), and if evaluating still fails
    -- every hold ends: an alert is paged rather than held by a rule nobody can evaluate
    FOR v_try IN 1..2 LOOP
        BEGIN
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
                                    END);
            EXIT;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT;
            IF public._monitoring_disable_broken_rules(v_error) = 0 OR v_try = 2 THEN
                UPDATE public.monitoring_notification_holds
                SET released_at = p_at, release_reason = 'rules could not be evaluated'
                WHERE released_at IS NULL;
                EXIT;
            END IF;
        END;
    END LOOP;

    -- alerts that nothing holds any more, still open: their triggers go out now, and their escalation starts
    v_released := public._monitoring_release_held_triggers();
    IF v_released IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM public._monitoring_start_released_escalations(v_released, p_at);
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
