-- pgalert 0008: alerts that are already over can be imported as history, without paging anyone.
--
-- The INSERT path for history (status 'resolved') lives in sql/alerts.sql; here: what the column means now,
-- and the admin's right to write it.

COMMENT ON COLUMN monitoring_alerts.status IS
'open, acknowledged or resolved. An INSERT always opens a current alert, except one with status resolved: that
is history (with created_at, resolved_at and optionally occurred_at and acknowledged_at), stored as given,
counted in the SLA figures, and sent to no provider.';
-- importing history is an admin's job: apps (monitoring_writer) cannot write status or lifecycle times
GRANT INSERT, SELECT (id) ON monitoring_alerts TO monitoring_admin;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0008', 'history_import');
