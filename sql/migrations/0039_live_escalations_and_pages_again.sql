-- pgalert 0039: an acknowledge or resolve ends the escalation at once, and a person is paged again whenever the
-- alert needs them again (#36, items 3 and 4).
-- - A person may have many pages of one alert over its life (a later step that names them again, a reopen): one
--   running at a time, the ended ones kept as its history. Each page's messages are targeted by its own id, so a
--   new page runs the person's rules from the first.
-- - Escalations of alerts already acknowledged or resolved end now, at that time, as the lifecycle ends them from
--   now on (they ran until their next step fell due).

ALTER TABLE monitoring_person_pages DROP CONSTRAINT one_page_per_alert_and_person;
DROP INDEX monitoring_person_pages_running;
CREATE UNIQUE INDEX one_running_page_per_alert_and_person ON monitoring_person_pages (alert_id, person_id)
WHERE finished_at IS NULL;
-- an alert's pages, for its timeline, a reply naming it, and its purge
CREATE INDEX monitoring_person_pages_alert ON monitoring_person_pages (alert_id);
COMMENT ON TABLE monitoring_person_pages IS
'A person being paged for an alert (an escalation step named them, the alert was reopened, or a test page): their
notification rules run from started_at until the alert is acknowledged or resolved, or until they are paged again
(finish_reason paged again: a new page runs their rules from the first). One page of an alert and person runs at a
time. Each message is a delivery whose target is page:<page id>:<rule id>.';

UPDATE monitoring_alert_escalations AS e
SET
    finished_at = CASE WHEN a.status = 'acknowledged' THEN a.acknowledged_at ELSE a.resolved_at END,
    finish_reason = a.status,
    next_step_at = NULL
FROM monitoring_alerts AS a
WHERE a.id = e.alert_id AND e.finished_at IS NULL AND a.status <> 'open';

INSERT INTO _monitoring_migrations (version, name) VALUES ('0039', 'live_escalations_and_pages_again');
