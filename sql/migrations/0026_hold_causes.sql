-- pgalert 0026: a hold names its cause by id. It was matched to its cause by its label (held_by), so renaming
-- a maintenance window or an inhibit rule while it held alerts ended their holds at the next release.

ALTER TABLE monitoring_notification_holds ADD COLUMN cause_id bigint;
COMMENT ON COLUMN monitoring_notification_holds.cause_id IS
'The id of the silence, maintenance window or inhibit rule that holds (an inhibition also by source_alert_id);
held_by is its label, for people. NULL only for a hold older than this column whose cause was renamed before.';

UPDATE monitoring_notification_holds AS h SET cause_id = s.id
FROM monitoring_silences AS s
WHERE h.reason = 'silence' AND h.held_by = 'silence ' || s.id;
UPDATE monitoring_notification_holds AS h SET cause_id = w.id
FROM monitoring_maintenance_windows AS w
WHERE h.reason = 'maintenance' AND h.held_by = 'maintenance window ' || w.name;
UPDATE monitoring_notification_holds AS h SET cause_id = r.id
FROM monitoring_inhibit_rules AS r
WHERE h.reason = 'inhibition' AND h.held_by LIKE 'inhibit rule ' || r.name || ': alert %';

DROP INDEX one_open_hold_per_cause;
CREATE UNIQUE INDEX one_open_hold_per_cause ON monitoring_notification_holds (
    alert_id, reason, coalesce(cause_id, -1), coalesce(source_alert_id, -1), held_by
) WHERE released_at IS NULL;

-- returns the cause's id too (sql/hygiene.sql)
DROP FUNCTION IF EXISTS _monitoring_holds_for(monitoring_alerts, timestamptz);

INSERT INTO _monitoring_migrations (version, name) VALUES ('0026', 'hold_causes');
