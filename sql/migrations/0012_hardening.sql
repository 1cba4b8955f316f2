-- pgalert 0012: roles that mean what they say, sizes with limits, and a clock writers do not control.
--
-- The constraints are NOT VALID: they bind every row written from now on, and a database that already holds
-- an oversized row still upgrades (VALIDATE CONSTRAINT later, after cleaning up, if you want them checked).

-- monitoring_rule_runner owns the one function that runs sql rules' queries (sql/rules.sql), which PostgreSQL
-- then runs as this role with no way back: SET ROLE and SET SESSION AUTHORIZATION are refused inside a
-- security-definer function. Being a member of it only ever served SET ROLE, which a query could undo.
ALTER ROLE monitoring_rule_runner NOINHERIT;
REVOKE monitoring_rule_runner FROM monitoring_admin, monitoring_reader;

INSERT INTO monitoring_settings (setting, value, description) VALUES
(
    'alert_time_horizon', '7 days',
    'how long before now an app (monitoring_writer) may say an alert''s problem started (occurred_at); older '
    || 'alerts are history, which an admin imports'
);

-- what fits every provider's limits once truncated, and cannot grow a row without bound
ALTER TABLE monitoring_alerts
ADD CONSTRAINT alert_type_fits_in_200_characters CHECK (char_length(alert_type) <= 200) NOT VALID,
ADD CONSTRAINT title_fits_in_1024_characters CHECK (char_length(title) <= 1024) NOT VALID,
ADD CONSTRAINT message_fits_in_20000_characters CHECK (char_length(message) <= 20000) NOT VALID,
ADD CONSTRAINT source_fits_in_500_characters CHECK (char_length(source) <= 500) NOT VALID,
ADD CONSTRAINT dedup_key_fits_in_500_characters CHECK (char_length(dedup_key) <= 500) NOT VALID,
ADD CONSTRAINT details_are_an_object_of_at_most_64_kib
CHECK (jsonb_typeof(details) = 'object' AND octet_length(details::text) <= 65536) NOT VALID;
COMMENT ON COLUMN monitoring_alerts.details IS
'A JSON object of facts for the responder (at most 64 KiB as JSON text). Any other JSON value an app INSERTs is
kept as {"value": <it>}, and JSON null as {}. A repeat merges its keys into the open alert''s details; when the
merge would pass the limit, the repeat''s details replace them.';

-- a NaN or infinite measurement would make every aggregate rule over it page ("p95 is NaN")
ALTER TABLE monitoring_events
ADD CONSTRAINT value_is_a_finite_number CHECK (value IS NULL OR value NOT IN ('NaN', 'Infinity', '-Infinity')) NOT VALID,
ADD CONSTRAINT event_type_fits_in_200_characters CHECK (char_length(event_type) <= 200) NOT VALID,
ADD CONSTRAINT labels_fit_in_8_kib CHECK (pg_column_size(labels) <= 8192) NOT VALID;

ALTER TABLE monitoring_alert_rules
ADD CONSTRAINT query_fits_in_10000_characters CHECK (char_length(query) <= 10000) NOT VALID;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0012', 'hardening');
