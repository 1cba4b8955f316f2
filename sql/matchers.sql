-- Matchers: how silences, maintenance windows and inhibit, group and flap rules name the alerts they apply to,
-- as Alertmanager's do. A rule's matchers are checked when it is saved (so matching never fails at INSERT time),
-- and what an alert brings to matching (its regex misses and the gates it opens) is computed once per alert, so
-- the rules in force cost what the ones an alert could meet cost, not all of them. The rules themselves, and what
-- they do to an alert, are sql/silences.sql's (and grouping.sql's, flapping.sql's).
--
-- Owns: monitoring_regex_prefilters

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
