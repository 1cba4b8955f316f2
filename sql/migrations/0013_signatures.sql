-- pgalert 0013: two public functions return one more column, which CREATE OR REPLACE cannot do; dropped here,
-- sql/rules.sql and sql/sla.sql define them again.
--
-- monitoring_evaluate_alert_rules gains p_force and says in skipped why a rule was not evaluated;
-- monitoring_get_sla_summary gains targets_applied, the targets that decided within_target.

DROP FUNCTION IF EXISTS monitoring_evaluate_alert_rules(timestamptz, boolean);
DROP FUNCTION IF EXISTS monitoring_get_sla_summary(numeric, timestamptz);

INSERT INTO _monitoring_migrations (version, name) VALUES ('0013', 'signatures');
