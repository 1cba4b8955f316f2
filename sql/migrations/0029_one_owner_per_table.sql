-- pgalert 0029: every table has one owning file of definitions (sql/definitions.txt says which file may call
-- which). The functions below were how one concern wrote another's tables; their work is now done by the owners'
-- functions, and one of them returns what it used to do itself, so they go before the definitions are applied.

DROP FUNCTION IF EXISTS _monitoring_group_new_alerts(bigint[]);
DROP FUNCTION IF EXISTS _monitoring_group_lifecycle(bigint, text, text, text, timestamptz);
DROP FUNCTION IF EXISTS _monitoring_raise_group_severity(bigint, text);
DROP FUNCTION IF EXISTS _monitoring_member_raised(bigint, text);
-- lifecycle.sql's functions now live in alerts.sql, and monitoring_purge_history in retention.sql
DELETE FROM _monitoring_definitions
WHERE file = 'lifecycle.sql';

INSERT INTO _monitoring_migrations (version, name) VALUES ('0029', 'one_owner_per_table');
