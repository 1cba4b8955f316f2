-- pgalert 0011: escalation steps run as one statement for all due alerts.
--
-- A function body, so it now lives in sql/escalation.sql (_monitoring_escalate). The version is kept so that
-- databases which applied it stay in step.

INSERT INTO _monitoring_migrations (version, name) VALUES ('0011', 'escalate_in_sets');
