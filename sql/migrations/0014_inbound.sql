-- pgalert 0014: the inbound side (`pgalert serve`). Responders act at PagerDuty, Opsgenie and Slack and
-- pgalert hears it; tools that cannot open a PostgreSQL connection raise alerts over HTTP.
--
-- - monitoring_inbound: the role `pgalert serve` logs in with. It owns no table rights: it runs the
--   monitoring_inbound_* functions (sql/inbound.sql) and nothing else.
-- - where an acknowledge or resolve came from (sql, pagerduty, opsgenie, slack, alertmanager, api), so the
--   provider it came from is not told again and an analyst sees where people act;
-- - API clients, by the SHA-256 of their token (the token itself is shown once, never stored);
-- - every inbound action, with the provider's own id for it, so a webhook delivered twice acts once;
-- - what a provider calls an alert (a PagerDuty incident id, an Alertmanager fingerprint and start).

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'monitoring_inbound') THEN
        BEGIN
            CREATE ROLE monitoring_inbound NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database's migration created it a moment ago
        END;
    END IF;
END
$roles$;

ALTER TABLE monitoring_alerts
ADD COLUMN acknowledged_via text,
ADD COLUMN resolved_via text;
COMMENT ON COLUMN monitoring_alerts.acknowledged_via IS
'Where it was acknowledged: sql, or the provider or endpoint a responder used (pagerduty, opsgenie, slack, api).';
COMMENT ON COLUMN monitoring_alerts.resolved_via IS
'Where it was resolved: sql, or the provider or endpoint (pagerduty, opsgenie, slack, alertmanager, api).';

CREATE TABLE monitoring_api_clients (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CONSTRAINT api_client_name_is_simple CHECK (name ~ '^[a-z][a-z0-9_.-]{0,62}$'),
    token_sha256 bytea NOT NULL UNIQUE CONSTRAINT token_hash_is_sha256 CHECK (octet_length(token_sha256) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL DEFAULT session_user,
    revoked_at timestamptz
);
COMMENT ON TABLE monitoring_api_clients IS
'Who may post alerts to `pgalert serve` (the generic API and the Alertmanager receiver), each with its own
bearer token. Only the SHA-256 of a token is kept; `pgalert api-client create` shows the token once.';

CREATE TABLE monitoring_inbound_actions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    via text NOT NULL,
    receipt_id text,
    alert_id bigint REFERENCES monitoring_alerts (id) ON DELETE CASCADE,
    action text NOT NULL
    CONSTRAINT inbound_action_is_known CHECK (action IN ('acknowledge', 'resolve', 'unacknowledge', 'reopen')),
    actor text,
    occurred_at timestamptz,
    outcome text NOT NULL DEFAULT 'received',
    CONSTRAINT one_action_per_receipt UNIQUE (via, receipt_id)
);
CREATE INDEX monitoring_inbound_actions_alert ON monitoring_inbound_actions (alert_id);
CREATE INDEX monitoring_inbound_actions_received_at ON monitoring_inbound_actions (received_at);
COMMENT ON TABLE monitoring_inbound_actions IS
'Every acknowledge, resolve, unacknowledge or reopen that came from a provider: who, when they did it
(occurred_at, the provider''s time), when pgalert heard it, and what it changed (outcome). receipt_id is the
provider''s id for the delivery (PagerDuty X-Webhook-Id, ...): a repeat is recorded once and acts once.';

CREATE TABLE _monitoring_alert_references (
    via text NOT NULL,
    reference text NOT NULL,
    alert_id bigint NOT NULL REFERENCES monitoring_alerts (id) ON DELETE CASCADE,
    PRIMARY KEY (via, reference)
);
CREATE INDEX _monitoring_alert_references_alert ON _monitoring_alert_references (alert_id);

GRANT USAGE ON SCHEMA public TO monitoring_inbound;
REVOKE ALL ON monitoring_api_clients, monitoring_inbound_actions, _monitoring_alert_references FROM PUBLIC;
GRANT SELECT ON monitoring_inbound_actions TO monitoring_reader;
GRANT DELETE ON monitoring_inbound_actions TO monitoring_admin;  -- monitoring_purge_history
-- admins see who holds a token, never the hashes; tokens are created and revoked through functions
GRANT SELECT (id, name, created_at, created_by, revoked_at) ON monitoring_api_clients TO monitoring_admin;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0014', 'inbound');
