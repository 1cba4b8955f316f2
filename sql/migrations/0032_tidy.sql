-- pgalert 0032: what the layout of 0029-0031 left unused. Inhibit rules' sources are found through
-- monitoring_inhibit_sources (0031), so the generated source_alert_type that let a scan use an index is gone;
-- and escalation hands its pages to paging as one document, so the function that took three arrays goes before
-- the definitions are applied.

ALTER TABLE monitoring_inhibit_rules DROP COLUMN source_alert_type;
DROP FUNCTION IF EXISTS _monitoring_page_people(bigint[], bigint[], text[], timestamptz);

INSERT INTO _monitoring_migrations (version, name) VALUES ('0032', 'tidy');
