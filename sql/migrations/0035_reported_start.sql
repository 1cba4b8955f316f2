-- pgalert 0035: an alert is never refused for being old. A writer's occurred_at further back than
-- alert_time_horizon was an error, and the alert was lost: Alertmanager re-sends a firing alert every
-- repeat_interval with its original startsAt, so a problem firing for more than a week (a disk filling slowly, a
-- certificate) was rejected the first time pgalert heard of it and never paged. Such a time is now clamped to the
-- horizon (the alert's escalation and MTTD stay bounded, as the horizon meant), and the time the writer claimed is
-- kept here.

ALTER TABLE monitoring_alerts ADD COLUMN IF NOT EXISTS reported_occurred_at timestamptz;
COMMENT ON COLUMN monitoring_alerts.reported_occurred_at IS
'The start a writer reported when it lay further back than alert_time_horizon: occurred_at was clamped to the horizon
and this keeps what was claimed. NULL otherwise.';

UPDATE monitoring_settings
SET
    description = 'how far before now an app (monitoring_writer) or an API client may say an alert''s problem '
    || 'started (occurred_at); an older start is clamped to it and kept in reported_occurred_at'
WHERE setting = 'alert_time_horizon';

INSERT INTO _monitoring_migrations (version, name) VALUES ('0035', 'reported_start');
