-- pgalert 0003: SLA tracking. One row per alert, kept current by the lifecycle; targets as data; summaries.
--
-- Definitions (also in COMMENT ON and the README):
--   MTTD = detected - occurred            delivery time = first notified - detected
--   MTTA = acknowledged - detected        MTTR = resolved - detected (and, separately, resolved - acknowledged)
--   false-positive rate = resolved as false positive / resolved
--   provider success rate = deliveries that succeeded / deliveries attempted (first attempt, and eventually)
-- Windows: an alert counts in the window it was detected in, (at - hours, at].

CREATE TABLE monitoring_sla_metrics (
    alert_id bigint PRIMARY KEY REFERENCES monitoring_alerts (id) ON DELETE CASCADE,
    alert_type text NOT NULL,
    severity text NOT NULL,
    occurred_at timestamptz NOT NULL,
    detected_at timestamptz NOT NULL,
    first_notified_at timestamptz,
    acknowledged_at timestamptz,
    acknowledged_by text,
    resolved_at timestamptz,
    resolved_by text,
    false_positive boolean NOT NULL DEFAULT FALSE,
    escalation_level integer NOT NULL DEFAULT 0
);
CREATE INDEX monitoring_sla_metrics_detected_at ON monitoring_sla_metrics (detected_at);

COMMENT ON TABLE monitoring_sla_metrics IS
'One row per alert, kept current by the lifecycle (creation, first successful delivery, acknowledge, resolve,
escalation). MTTD = detected_at - occurred_at; delivery time = first_notified_at - detected_at;
MTTA = acknowledged_at - detected_at; MTTR = resolved_at - detected_at.';
COMMENT ON COLUMN monitoring_sla_metrics.occurred_at IS 'First evidence of the problem (for a rule: its first qualifying event).';
COMMENT ON COLUMN monitoring_sla_metrics.detected_at IS 'When the alert was created.';
COMMENT ON COLUMN monitoring_sla_metrics.first_notified_at IS 'When the first provider accepted the alert.';
COMMENT ON COLUMN monitoring_sla_metrics.escalation_level IS 'Highest escalation step reached (0: none).';

CREATE TABLE monitoring_sla_targets (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    metric text NOT NULL CONSTRAINT sla_metric_is_known CHECK (
        metric IN (
            'mttd', 'delivery_time', 'mtta', 'mttr', 'mttr_after_ack', 'false_positive_rate',
            'provider_success_rate', 'provider_first_attempt_success_rate'
        )
    ),
    severity text CONSTRAINT sla_target_severity_is_known CHECK (severity IN ('critical', 'warning', 'info')),
    alert_type text,
    target numeric NOT NULL CONSTRAINT target_is_not_negative CHECK (target >= 0),
    compliance numeric CONSTRAINT compliance_is_a_share CHECK (compliance > 0 AND compliance <= 1)
);
CREATE UNIQUE INDEX one_sla_target_per_scope
ON monitoring_sla_targets (metric, coalesce(severity, ''), coalesce(alert_type, ''));
COMMENT ON TABLE monitoring_sla_targets IS
'SLA targets. For times, target is in seconds and compliance the share of alerts that must be within it;
for rates, target is the ratio (false positives must stay under it, success rates above it). A row naming an
alert_type overrides one naming a severity, which overrides the default (both NULL).';

INSERT INTO monitoring_sla_targets (metric, target, compliance) VALUES
('mttd', 300, 0.90),
('delivery_time', 60, 0.95),
('mtta', 300, 0.90),
('mttr', 1800, 0.80),
('false_positive_rate', 0.05, NULL),
('provider_success_rate', 0.95, NULL),
('provider_first_attempt_success_rate', 0.95, NULL);

REVOKE ALL ON monitoring_sla_metrics, monitoring_sla_targets FROM PUBLIC;
GRANT SELECT ON monitoring_sla_metrics, monitoring_sla_targets TO monitoring_reader, monitoring_dispatcher;
GRANT INSERT, UPDATE, DELETE ON monitoring_sla_targets TO monitoring_admin;

-- existing alerts get their rows too (upgrades)
INSERT INTO monitoring_sla_metrics
(
    alert_id, alert_type, severity, occurred_at, detected_at, acknowledged_at, acknowledged_by, resolved_at,
    resolved_by, false_positive, first_notified_at
)
SELECT
    a.id,
    a.alert_type,
    a.severity,
    a.occurred_at,
    a.created_at,
    a.acknowledged_at,
    a.acknowledged_by,
    a.resolved_at,
    a.resolved_by,
    a.false_positive,
    (
        SELECT min(d.completed_at) FROM monitoring_deliveries AS d
        WHERE d.alert_id = a.id AND d.action = 'trigger' AND d.status = 'succeeded'
    ) AS first_notified_at
FROM monitoring_alerts AS a;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0003', 'sla');
