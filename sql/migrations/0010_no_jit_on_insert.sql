-- pgalert 0010: no JIT compilation inside the alert INSERT trigger.
--
-- A function attribute, so it now lives beside _monitoring_alerts_after_insert in sql/alerts.sql. The
-- version is kept so that databases which applied it stay in step.

INSERT INTO _monitoring_migrations (version, name) VALUES ('0010', 'no_jit_on_insert');
