-- pgalert 0006: a sql rule runs in its own pg_cron job under its own statement timeout (why: sql/rules.sql).
--
-- Here: each rule's query_timeout, and the schedule row that is its job.

ALTER TABLE monitoring_alert_rules
ADD COLUMN query_timeout interval NOT NULL DEFAULT '5 seconds'
CONSTRAINT query_timeout_is_sensible CHECK (query_timeout >= '10 milliseconds' AND query_timeout <= '10 minutes');
COMMENT ON COLUMN monitoring_alert_rules.query_timeout IS
'sql rules: how long the query may run in its pg_cron job before it is canceled and recorded as an error.';

ALTER TABLE monitoring_schedules DROP CONSTRAINT command_is_one_select;
ALTER TABLE monitoring_schedules ADD CONSTRAINT command_is_one_call
CHECK (command ~ '^(SET statement_timeout = ''[0-9]+ms''; )?SELECT [a-z_]+\(.*\)$');
ALTER TABLE monitoring_schedules
ADD COLUMN rule_name text UNIQUE REFERENCES monitoring_alert_rules (rule_name) ON UPDATE CASCADE ON DELETE CASCADE;
COMMENT ON COLUMN monitoring_schedules.rule_name IS
'Set on the job of a sql rule; kept by pgalert as the rule is written, so edit the rule, not this row.';

UPDATE monitoring_schedules
SET
    command = 'SELECT monitoring_evaluate_alert_rules(p_sql_rules => FALSE)',
    description = 'Every minute: evaluate the due rules, fire and resolve their alerts (each sql rule has its own job).'
WHERE job_name = 'pgalert_evaluate_rules';

INSERT INTO _monitoring_migrations (version, name) VALUES ('0006', 'rule_isolation');
