-- pgalert 0010: no JIT compilation inside the alert INSERT trigger.
--
-- An INSERT of many alerts at once (a backfill, a storm written in one statement) is planned against its
-- transition table, and the routing join's estimate (one row per alert and route, with a subplan each)
-- passes jit_above_cost: the 10,000-alert INSERT spent 100-130 ms of its 1.6 s compiling, and a
-- single-row INSERT never reaches the threshold, so JIT only ever cost time here. Measured on a fresh
-- database, 10,000 critical alerts in one INSERT, four runs each way in two sessions: 1,472-1,571 ms
-- without JIT against 1,605-1,665 ms with it.
-- The setting holds for everything the trigger calls, the first escalation step included.

ALTER FUNCTION _monitoring_alerts_after_insert() SET jit = off;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0010', 'no_jit_on_insert');
