-- pgalert 0001: alerts, routing, the delivery outbox, acknowledge/resolve, roles.
--
-- Public interface: objects named monitoring_*. Objects named _monitoring_* are internal and may change in
-- any release. Tables, indexes, constraints and data only:
-- the functions, triggers and views live in sql/<concern>.sql. Applied by `pgalert migrate` or sql/install.psql.

-- One row identifying this installation, so provider dedup keys from two databases never collide.
CREATE TABLE _monitoring_installation (
    singleton boolean PRIMARY KEY DEFAULT TRUE CONSTRAINT only_one_installation CHECK (singleton),
    installation_id uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO _monitoring_installation DEFAULT VALUES;

------------------------------------------------------------------------------------------------------------
-- Roles (cluster-wide, so created only when missing; two databases migrating at once may race)
------------------------------------------------------------------------------------------------------------
DO $roles$
DECLARE
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY[
        'monitoring_reader', 'monitoring_writer', 'monitoring_dispatcher', 'monitoring_admin'
    ] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = v_role) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database's migration created it a moment ago
            END;
        END IF;
    END LOOP;
    -- an admin can do what readers and writers do
    EXECUTE 'GRANT monitoring_reader, monitoring_writer TO monitoring_admin';
END
$roles$;

------------------------------------------------------------------------------------------------------------
-- Providers and routing
------------------------------------------------------------------------------------------------------------
CREATE TABLE monitoring_providers (
    provider text PRIMARY KEY CONSTRAINT provider_name_is_simple CHECK (provider ~ '^[a-z][a-z0-9_]{0,30}$'),
    actions text[] NOT NULL
    CONSTRAINT actions_are_known CHECK (actions <@ ARRAY['trigger', 'acknowledge', 'resolve', 'notify']),
    is_pager boolean NOT NULL DEFAULT FALSE,
    description text NOT NULL DEFAULT ''
);
COMMENT ON TABLE monitoring_providers IS
'Where alerts can be delivered. actions: what the provider can be told (trigger, acknowledge, resolve, notify);
is_pager: it wakes a person up, so a critical alert that reached no pager is raised again elsewhere.
Configuration and secrets live in the dispatcher''s environment, never here.';

INSERT INTO monitoring_providers (provider, actions, is_pager, description) VALUES
('pagerduty', ARRAY['trigger', 'acknowledge', 'resolve'], TRUE, 'PagerDuty Events API v2'),
('opsgenie', ARRAY['trigger', 'acknowledge', 'resolve'], TRUE, 'Opsgenie Alert API (ends 2027-04-05)'),
('slack', ARRAY['trigger', 'acknowledge', 'resolve', 'notify'], FALSE, 'Slack incoming webhook'),
('sentry', ARRAY['trigger'], FALSE, 'Sentry envelope endpoint'),
('webhook', ARRAY['trigger', 'acknowledge', 'resolve', 'notify'], FALSE, 'HMAC-signed JSON webhook');

CREATE TABLE monitoring_routes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_type text,
    severity text CONSTRAINT route_severity_is_known CHECK (severity IN ('critical', 'warning', 'info')),
    provider text NOT NULL REFERENCES monitoring_providers (provider),
    enabled boolean NOT NULL DEFAULT TRUE
);
CREATE UNIQUE INDEX one_route_per_type_severity_provider
ON monitoring_routes (coalesce(alert_type, ''), coalesce(severity, ''), provider);
COMMENT ON TABLE monitoring_routes IS
'Which providers an alert goes to. A row with alert_type NULL is a default for its severity; rows naming an
alert_type replace the defaults for that type (and severity, or every severity when severity is NULL).
A disabled type-specific row therefore silences that type for that provider set.';
COMMENT ON COLUMN monitoring_routes.severity IS
'critical (P0), warning (P1), info (P2); NULL on a type-specific route means every severity.';

INSERT INTO monitoring_routes (severity, provider) VALUES
('critical', 'pagerduty'), ('critical', 'slack'), ('critical', 'sentry'),
('warning', 'opsgenie'), ('warning', 'slack'), ('warning', 'sentry'),
('info', 'slack');
-- A page that could not be delivered is raised through everything else that might still work.
INSERT INTO monitoring_routes (alert_type, severity, provider) VALUES
('pgalert_delivery_failure', NULL, 'opsgenie'),
('pgalert_delivery_failure', NULL, 'slack'),
('pgalert_delivery_failure', NULL, 'sentry'),
('pgalert_delivery_failure', NULL, 'webhook');

------------------------------------------------------------------------------------------------------------
-- Alerts
------------------------------------------------------------------------------------------------------------
CREATE TABLE monitoring_alerts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_type text NOT NULL,
    severity text NOT NULL CONSTRAINT severity_is_known CHECK (severity IN ('critical', 'warning', 'info')),
    priority text GENERATED ALWAYS AS (
        CASE severity WHEN 'critical' THEN 'P0' WHEN 'warning' THEN 'P1' ELSE 'P2' END
    ) STORED,
    title text NOT NULL CONSTRAINT title_is_not_blank CHECK (btrim(title) <> ''),
    message text NOT NULL DEFAULT '',
    source text NOT NULL DEFAULT '',
    dedup_key text NOT NULL,
    details jsonb NOT NULL DEFAULT '{}',
    status text NOT NULL DEFAULT 'open'
    CONSTRAINT status_is_known CHECK (status IN ('open', 'acknowledged', 'resolved')),
    occurred_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    occurrence_count integer NOT NULL DEFAULT 1,
    acknowledged_at timestamptz,
    acknowledged_by text,
    acknowledge_note text,
    resolved_at timestamptz,
    resolved_by text,
    resolve_note text,
    false_positive boolean NOT NULL DEFAULT FALSE,
    CONSTRAINT alert_type_is_not_blank CHECK (btrim(alert_type) <> ''),
    CONSTRAINT occurred_not_after_created CHECK (occurred_at <= created_at),
    CONSTRAINT acknowledged_after_created CHECK (acknowledged_at >= created_at),
    CONSTRAINT resolved_after_created CHECK (resolved_at >= created_at),
    CONSTRAINT acknowledged_has_time CHECK ((status = 'acknowledged') <= (acknowledged_at IS NOT NULL)),
    CONSTRAINT resolved_has_time CHECK ((status = 'resolved') = (resolved_at IS NOT NULL)),
    CONSTRAINT false_positive_only_when_resolved CHECK (NOT false_positive OR status = 'resolved')
);
-- The invariant behind deduplication: at most one unresolved alert per key.
CREATE UNIQUE INDEX one_open_alert_per_dedup_key ON monitoring_alerts (dedup_key) WHERE status <> 'resolved';
CREATE INDEX monitoring_alerts_created_at ON monitoring_alerts (created_at);

COMMENT ON TABLE monitoring_alerts IS
'Alerts. Apps INSERT (alert_type, severity, title, message[, source, dedup_key, details, occurred_at]).
While an alert with the same dedup_key is unresolved a new INSERT pages nobody: it bumps occurrence_count,
last_seen_at and keeps the latest title, message and details on the open alert (the INSERT reports 0 rows).';
COMMENT ON COLUMN monitoring_alerts.severity IS
'critical = P0 (pages: PagerDuty), warning = P1 (Opsgenie), info = P2 (Slack only). P0/P1/P2 are accepted on INSERT.';
COMMENT ON COLUMN monitoring_alerts.dedup_key IS
'Alerts with the same key while one is unresolved are one alert. Default: alert_type, or alert_type:source.';
COMMENT ON COLUMN monitoring_alerts.status IS
'open: nobody has acknowledged it; acknowledged: someone is on it; resolved: over (a new INSERT opens a new alert).';
COMMENT ON COLUMN monitoring_alerts.occurred_at IS 'When the problem started (first evidence); MTTD counts from here.';
COMMENT ON COLUMN monitoring_alerts.created_at IS 'When the alert was detected (the row was written).';
COMMENT ON COLUMN monitoring_alerts.false_positive IS 'Set on resolve when the alert should not have fired.';

------------------------------------------------------------------------------------------------------------
-- The delivery outbox
------------------------------------------------------------------------------------------------------------
CREATE TABLE monitoring_deliveries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id bigint NOT NULL REFERENCES monitoring_alerts (id) ON DELETE CASCADE,
    provider text NOT NULL,
    action text NOT NULL CONSTRAINT action_is_known CHECK (action IN ('trigger', 'acknowledge', 'resolve', 'notify')),
    target text NOT NULL DEFAULT '',
    context jsonb NOT NULL DEFAULT '{}',
    status text NOT NULL DEFAULT 'pending'
    CONSTRAINT delivery_status_is_known CHECK (status IN ('pending', 'sending', 'succeeded', 'failed', 'skipped')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_by text,
    last_http_status integer,
    last_error text,
    provider_reference text,
    created_at timestamptz NOT NULL DEFAULT now(),
    first_attempt_at timestamptz,
    completed_at timestamptz,
    CONSTRAINT one_delivery_per_alert_provider_action UNIQUE (alert_id, provider, action, target),
    CONSTRAINT completed_when_final CHECK ((status IN ('succeeded', 'failed', 'skipped')) = (completed_at IS NOT NULL))
);
CREATE INDEX monitoring_deliveries_due ON monitoring_deliveries (next_attempt_at, id)
WHERE status IN ('pending', 'sending');

COMMENT ON TABLE monitoring_deliveries IS
'The outbox: one row per (alert, provider, action, target), written in the transaction that made it necessary.
Dispatchers claim due rows with FOR UPDATE SKIP LOCKED; NOTIFY monitoring_deliveries is only a wake-up.';
COMMENT ON COLUMN monitoring_deliveries.status IS
'pending: waiting for next_attempt_at; sending: claimed, and next_attempt_at is the lease expiry after which
another dispatcher takes it over; succeeded; failed: final error or attempts exhausted (see last_error);
skipped: the provider is not configured on the dispatcher (reason in last_error).';
COMMENT ON COLUMN monitoring_deliveries.target IS 'Who a notify (escalation) is addressed to; empty otherwise.';
COMMENT ON COLUMN monitoring_deliveries.context IS 'Action facts, e.g. who acknowledged and their note.';
COMMENT ON COLUMN monitoring_deliveries.provider_reference IS
'What the provider calls it: PagerDuty dedup_key, Opsgenie requestId, Sentry event id.';

CREATE TABLE monitoring_delivery_attempts (
    delivery_id bigint NOT NULL REFERENCES monitoring_deliveries (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    dispatcher text NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    outcome text NOT NULL CONSTRAINT attempt_outcome_is_known CHECK (outcome IN ('succeeded', 'retry', 'failed', 'skipped')),
    http_status integer,
    error text,
    PRIMARY KEY (delivery_id, attempt)
);
COMMENT ON TABLE monitoring_delivery_attempts IS
'Every attempt to send a delivery, with its HTTP status and error. outcome retry means it will be tried again.';

-- Pacing shared by every dispatcher: a generic cell rate algorithm, one row per provider.
CREATE TABLE _monitoring_pacing (
    provider text PRIMARY KEY,
    theoretical_arrival timestamptz NOT NULL DEFAULT '-infinity'
);

------------------------------------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------------------------------------
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;

GRANT USAGE ON SCHEMA public TO monitoring_reader, monitoring_writer, monitoring_dispatcher, monitoring_admin;
GRANT SELECT ON monitoring_alerts, monitoring_deliveries, monitoring_delivery_attempts, monitoring_routes,
monitoring_providers TO monitoring_reader, monitoring_dispatcher;
GRANT INSERT (alert_type, severity, title, message, source, dedup_key, details, occurred_at, created_at),
SELECT (id) ON monitoring_alerts TO monitoring_writer;

GRANT UPDATE, DELETE ON monitoring_alerts TO monitoring_admin;
GRANT INSERT, UPDATE, DELETE ON monitoring_routes, monitoring_providers TO monitoring_admin;
GRANT INSERT, UPDATE ON monitoring_deliveries TO monitoring_admin;

GRANT UPDATE, INSERT ON monitoring_deliveries TO monitoring_dispatcher;
GRANT INSERT ON monitoring_delivery_attempts, monitoring_alerts TO monitoring_dispatcher;
GRANT SELECT, INSERT, UPDATE ON _monitoring_pacing TO monitoring_dispatcher;
GRANT SELECT ON _monitoring_installation TO monitoring_dispatcher;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0001', 'core');
