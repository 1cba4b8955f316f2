-- pgalert 0033: the rules worth testing against an alert are found by index, and one compiled regex per field
-- stands for all the regex matchers on it. With 1,000 silences of regex matchers each INSERT tested every silence
-- and compiled 1,000 regexes again (PostgreSQL keeps the last 32 compiled regexes of a connection): 0.08x the rate
-- with none in force (sql/hygiene.sql says how both are used).

-- Per field, the alternation of every =~ regex of the rules in force on it, anchored as they are evaluated: a value
-- it does not match matches none of them, so those matchers fail without being compiled.
CREATE TABLE monitoring_regex_prefilters (
    matcher_key text PRIMARY KEY,
    field text NOT NULL,
    regexes integer NOT NULL CHECK (regexes > 0),
    start_lengths integer[] NOT NULL,
    pattern text
);
COMMENT ON TABLE monitoring_regex_prefilters IS
'Derived, kept by pgalert: per field (matcher_key: the field, prefixed by (?i) for case-insensitive regexes) the
alternation of every =~ regex of the silences, windows, inhibit, group and flap rules in force, anchored as they are
evaluated. A value that pattern does not match matches none of them. pattern is NULL when the alternation does not
compile as a whole (too complex): those regexes are then tested one by one. start_lengths: the lengths of the
literal text the regexes begin with (the gates an alert opens on the field).';

REVOKE ALL ON monitoring_regex_prefilters FROM PUBLIC;
GRANT SELECT ON monitoring_regex_prefilters TO monitoring_reader, monitoring_admin;

-- A gate of a list of matchers: one thing an alert must have for them to be worth testing, kept by pgalert
-- (_monitoring_matchers_gate in sql/hygiene.sql says which). An alert lists the gates it opens and the rules are
-- looked up by them. 0021's equals_field/equals_value, which served the same end by a test on every silence, go.
ALTER TABLE monitoring_silences DROP COLUMN equals_field, DROP COLUMN equals_value;
-- '*' until set: a rule saved with triggers off (a restore, an import) is tested against every alert, so it still
-- holds what it matches, and one that cannot be evaluated is still found and taken out of force
ALTER TABLE monitoring_silences ADD COLUMN gate text NOT NULL DEFAULT '*';
-- the silences in force behind a gate (a gate is at most ~330 characters: a btree entry)
CREATE INDEX monitoring_silences_by_gate ON monitoring_silences (gate, ends_at) WHERE expired_at IS NULL;
COMMENT ON COLUMN monitoring_silences.gate IS
'Kept by pgalert from matchers: field=value, field~prefix or *, what an alert must open to be tested against this
silence.';

ALTER TABLE monitoring_inhibit_rules ADD COLUMN source_gate text NOT NULL DEFAULT '*',
ADD COLUMN target_gate text NOT NULL DEFAULT '*';
COMMENT ON COLUMN monitoring_inhibit_rules.source_gate IS
'Kept by pgalert from source_matchers: field=value, field~prefix or *, what an alert must open to be tested as a
source.';
COMMENT ON COLUMN monitoring_inhibit_rules.target_gate IS
'Kept by pgalert from target_matchers: field=value, field~prefix or *, what an alert must open to be tested as a
target.';

-- What one new alert brings to matching (sql/hygiene.sql, _monitoring_match_keys), computed once per alert and
-- handed from one statement of the INSERT trigger to the next.
CREATE TYPE monitoring_alert_match_keys AS (
    alert_id bigint,
    regex_misses text [],
    gates text []
);
COMMENT ON TYPE monitoring_alert_match_keys IS
'An alert''s regex prefilter misses and the gates it opens, as the INSERT trigger hands them between statements.';

-- A target's sources are looked up per rule by its equal values; with the key (rule_id, alert_id) the planner
-- could read every source of the rule instead, when their values looked alike. Keyed by alert, the index by alert
-- is the key's own.
ALTER TABLE monitoring_inhibit_sources DROP CONSTRAINT monitoring_inhibit_sources_pkey;
ALTER TABLE monitoring_inhibit_sources ADD PRIMARY KEY (alert_id, rule_id);
DROP INDEX monitoring_inhibit_sources_by_alert;

-- An alert's holds, released or not, by index: deleting an alert (retention, a benchmark's cleanup) cascades to its
-- holds, and with only the index of open holds every deleted alert read them all. The open ones are still found by
-- one_open_hold_per_cause.
CREATE INDEX monitoring_notification_holds_by_alert ON monitoring_notification_holds (alert_id);
DROP INDEX monitoring_notification_holds_open;

-- the matchers and holds functions take the alert's gates and prefilter verdicts: the old signatures go before
-- the definitions
DROP FUNCTION IF EXISTS _monitoring_holds_for(monitoring_alerts, timestamptz);
DROP FUNCTION IF EXISTS _monitoring_failed_matchers(monitoring_alerts, jsonb);
DROP FUNCTION IF EXISTS _monitoring_note_inhibit_sources(monitoring_alerts[]);

INSERT INTO _monitoring_migrations (version, name) VALUES ('0033', 'rule_gates');
