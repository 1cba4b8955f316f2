-- pgalert 0004: events, rules that turn them into alerts, and health probes.

CREATE TABLE monitoring_settings (
    setting text PRIMARY KEY,
    value text NOT NULL,
    description text NOT NULL DEFAULT ''
);
COMMENT ON TABLE monitoring_settings IS 'pgalert settings kept in the database; edit value with UPDATE.';
INSERT INTO monitoring_settings (setting, value, description) VALUES
('event_retention', '14 days', 'monitoring_events older than this are dropped, a day partition at a time'),
('sql_rule_max_cost', '1000000', 'plain-SQL rules whose planned cost exceeds this are refused when saved');

------------------------------------------------------------------------------------------------------------
-- Events: time-partitioned by day, with retention
------------------------------------------------------------------------------------------------------------
CREATE TABLE monitoring_events (
    event_type text NOT NULL,
    value double precision,
    labels jsonb NOT NULL DEFAULT '{}',
    occurred_at timestamptz NOT NULL DEFAULT now(),
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT event_type_is_not_blank CHECK (btrim(event_type) <> ''),
    CONSTRAINT labels_are_an_object CHECK (jsonb_typeof(labels) = 'object')
) PARTITION BY RANGE (occurred_at);
-- the window queries rules run: one event type, a time range, and the value for aggregates
CREATE INDEX monitoring_events_type_time ON monitoring_events (event_type, occurred_at) INCLUDE (value);
CREATE TABLE monitoring_events_default PARTITION OF monitoring_events DEFAULT;

COMMENT ON TABLE monitoring_events IS
'What apps and probes record: INSERT (event_type, value, labels[, occurred_at]); multi-row INSERT and COPY
welcome. occurred_at is the event''s own time, so late or imported events count in the right window.
Partitioned by day; partitions older than the event_retention setting are dropped.';
COMMENT ON COLUMN monitoring_events.value IS 'A measurement (ms, percent, ...) or NULL for a plain occurrence.';
COMMENT ON COLUMN monitoring_events.labels IS 'Dimensions such as {"host": "web-2"}; rules can group by them.';

------------------------------------------------------------------------------------------------------------
-- Rules
------------------------------------------------------------------------------------------------------------
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'monitoring_rule_runner') THEN
        BEGIN
            CREATE ROLE monitoring_rule_runner NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$roles$;

CREATE TABLE monitoring_alert_rules (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_name text NOT NULL UNIQUE CONSTRAINT rule_name_is_simple CHECK (rule_name ~ '^[a-z][a-z0-9_]{0,62}$'),
    rule_type text NOT NULL
    CONSTRAINT rule_type_is_known CHECK (rule_type IN ('count', 'aggregate', 'spike', 'absence', 'sql')),
    event_type text,
    window_size interval NOT NULL DEFAULT '5 minutes',
    aggregate text CONSTRAINT aggregate_is_known CHECK (
        aggregate IN ('avg', 'min', 'max', 'sum', 'last', 'p50', 'p95', 'p99')
    ),
    comparison text NOT NULL DEFAULT '>=' CONSTRAINT comparison_is_known CHECK (comparison IN ('>', '>=', '<', '<=')),
    threshold double precision,
    min_samples integer NOT NULL DEFAULT 1 CONSTRAINT min_samples_is_positive CHECK (min_samples >= 1),
    baseline_min integer NOT NULL DEFAULT 5 CONSTRAINT baseline_min_is_positive CHECK (baseline_min >= 1),
    group_by text[] NOT NULL DEFAULT '{}',
    query text,
    severity text NOT NULL,
    clear_after interval NOT NULL DEFAULT '5 minutes',
    evaluate_every interval NOT NULL DEFAULT '1 minute',
    runbook_url text,
    description text NOT NULL DEFAULT '',
    enabled boolean NOT NULL DEFAULT TRUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_evaluated_at timestamptz,
    last_observed double precision,
    last_error text,
    last_error_at timestamptz,
    CONSTRAINT window_is_sensible CHECK (window_size > '0' AND window_size <= '7 days'),
    CONSTRAINT clear_after_is_not_negative CHECK (clear_after >= '0'),
    CONSTRAINT evaluate_every_is_positive CHECK (evaluate_every > '0')
);
COMMENT ON TABLE monitoring_alert_rules IS
'Rules that turn events into alerts, one row each. rule_type:
count: events of event_type in window_size, compared (comparison, default >=) with threshold;
aggregate: avg|min|max|sum|last|p50|p95|p99 of value over window_size compared with threshold, once there are
  min_samples samples;
spike: events in window_size at least threshold percent above the previous window of the same length
  (300 means four times), with at least min_samples now and baseline_min before; silent until a full baseline;
absence: fewer than threshold events in window_size (heartbeats);
sql: query returns the rows that should alert (optional columns group_key, value, message, occurred_at); it
  runs as monitoring_rule_runner, which can read monitoring_events and monitoring_alerts only.
A rule grouped by labels (group_by) fires one alert per group. An alert resolves itself after its condition has
been clear for clear_after. Alerts carry alert_type = rule_name.';
COMMENT ON COLUMN monitoring_alert_rules.last_error IS 'Why the last evaluation failed (cleared when one succeeds).';

CREATE TABLE _monitoring_rule_state (
    rule_id bigint NOT NULL REFERENCES monitoring_alert_rules (id) ON DELETE CASCADE,
    group_key jsonb NOT NULL,
    alert_id bigint REFERENCES monitoring_alerts (id) ON DELETE SET NULL,
    clear_since timestamptz,
    PRIMARY KEY (rule_id, group_key)
);

------------------------------------------------------------------------------------------------------------
-- Health probes, run by dispatchers
------------------------------------------------------------------------------------------------------------
CREATE TABLE monitoring_health_checks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CONSTRAINT check_name_is_simple CHECK (name ~ '^[a-z][a-z0-9_.-]{0,62}$'),
    url text NOT NULL CONSTRAINT url_is_http_or_env CHECK (url ~* '^https?://[^/\s]+' OR url ~ '^env:[A-Z_][A-Z0-9_]*$'),
    method text NOT NULL DEFAULT 'GET' CONSTRAINT method_is_known CHECK (method IN ('GET', 'HEAD', 'POST')),
    expected_status integer NOT NULL DEFAULT 200 CONSTRAINT expected_status_is_http CHECK (expected_status BETWEEN 100 AND 599),
    timeout interval NOT NULL DEFAULT '5 seconds' CONSTRAINT timeout_is_sensible CHECK (timeout > '0' AND timeout <= '60 seconds'),
    check_interval interval NOT NULL DEFAULT '5 minutes' CONSTRAINT interval_is_sensible CHECK (check_interval >= '1 second'),
    enabled boolean NOT NULL DEFAULT TRUE,
    next_run_at timestamptz NOT NULL DEFAULT now(),
    last_run_at timestamptz,
    last_status integer,
    last_response_ms double precision,
    last_error text
);
COMMENT ON TABLE monitoring_health_checks IS
'HTTP probes. Dispatchers run due checks (a check is claimed by one dispatcher only) and record each result as
events: api_response_time (value: milliseconds, labels: check, status) and, when the status is not
expected_status or the request fails, health_check_failure (labels: check, reason). url is http(s)://... or
env:NAME, read from each dispatcher''s environment so a URL carrying a secret never lands here; PRODUCTION_URL
in a dispatcher''s environment adds the check named production (url env:PRODUCTION_URL).';

------------------------------------------------------------------------------------------------------------
-- The seed's rules, targets and schedules
------------------------------------------------------------------------------------------------------------
INSERT INTO monitoring_alert_rules
(rule_name, rule_type, event_type, window_size, aggregate, comparison, threshold, min_samples, group_by, severity, description)
VALUES
(
    'payment_failure_critical', 'count', 'payment_failure', '5 minutes', NULL, '>=', 3, 1, '{}', 'critical',
    'Payments are failing: 3 or more payment_failure events in 5 minutes.'
),
(
    'database_connection_failure', 'count', 'database_connection_failure', '1 minute', NULL, '>=', 1, 1, '{}', 'critical',
    'The application cannot reach its database.'
),
(
    'api_response_degradation', 'aggregate', 'api_response_time', '5 minutes', 'p95', '>', 3000, 5, '{}', 'critical',
    'API P95 response time above 3 s over 5 minutes.'
),
(
    'auth_failure_spike', 'spike', 'auth_failure', '5 minutes', NULL, '>=', 300, 10, '{}', 'critical',
    'Authentication failures up 300% (four times) on the previous 5 minutes: credential stuffing?'
),
(
    'error_rate_spike', 'count', 'application_error', '5 minutes', NULL, '>=', 10, 1, '{}', 'warning',
    '10 or more application errors in 5 minutes.'
),
(
    'api_response_warning', 'aggregate', 'api_response_time', '5 minutes', 'p95', '>', 1500, 5, '{}', 'warning',
    'API P95 response time above 1.5 s over 5 minutes.'
),
(
    'memory_usage_high', 'aggregate', 'memory_usage_percent', '5 minutes', 'last', '>', 85, 1, '{host}', 'warning',
    'A host''s memory use is above 85%.'
);

INSERT INTO monitoring_sla_targets (metric, alert_type, target, compliance) VALUES
('mttd', 'database_connection_failure', 60, 0.90);

INSERT INTO monitoring_schedules (job_name, schedule, command, description) VALUES
(
    'pgalert_evaluate_rules', '* * * * *', 'SELECT monitoring_evaluate_alert_rules()',
    'Every minute: evaluate the due rules, fire and resolve their alerts.'
),
(
    'pgalert_event_partitions', '7 * * * *', 'SELECT monitoring_maintain_event_partitions()',
    'Hourly: create the next days'' event partitions and drop those past retention.'
);

------------------------------------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------------------------------------
REVOKE ALL ON monitoring_events, monitoring_alert_rules, monitoring_health_checks, monitoring_settings,
_monitoring_rule_state FROM PUBLIC;
GRANT INSERT ON monitoring_events TO monitoring_writer, monitoring_dispatcher;
GRANT SELECT ON monitoring_events, monitoring_alert_rules, monitoring_health_checks, monitoring_settings
TO monitoring_reader;
GRANT INSERT, UPDATE, DELETE ON monitoring_alert_rules, monitoring_health_checks, monitoring_settings TO monitoring_admin;
GRANT monitoring_rule_runner TO monitoring_admin, monitoring_reader;
GRANT USAGE ON SCHEMA public TO monitoring_rule_runner;
GRANT SELECT ON monitoring_events, monitoring_alerts TO monitoring_rule_runner;
GRANT SELECT, UPDATE ON monitoring_health_checks TO monitoring_dispatcher;
GRANT SELECT ON monitoring_settings TO monitoring_dispatcher;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0004', 'rules');
