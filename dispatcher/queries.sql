-- Every query the dispatcher runs, by name. The logic lives in the SQL functions these call.

-- name: listen
LISTEN monitoring_deliveries;

-- name: ping
SELECT 1;

-- name: schema_version
-- NULL when pgalert was never migrated here (the bookkeeping table is then missing)
SELECT CASE WHEN to_regclass('public._monitoring_migrations') IS NOT NULL THEN 'migrated' END;

-- name: latest_migration
SELECT max(version) FROM public._monitoring_migrations;

-- name: claim
SELECT delivery_id, attempt, provider, action, target, context, provider_key, alert
FROM monitoring_claim_deliveries(%(dispatcher)s, %(limit)s, make_interval(secs => %(lease_seconds)s), %(paces)s);

-- name: complete
SELECT monitoring_complete_deliveries(%(dispatcher)s, %(results)s);

-- name: release
SELECT monitoring_release_deliveries(%(dispatcher)s, %(delivery_ids)s);

-- name: reserve_slots
SELECT granted, extract(EPOCH FROM next_free_at - clock_timestamp())::float8 AS wait_seconds
FROM monitoring_reserve_send_slots(
    %(provider)s, %(count)s, make_interval(secs => %(interval_seconds)s), %(burst)s
);

-- name: channels
-- the channels beyond each kind's default one (those are configured by the environment alone)
SELECT provider, kind, settings, secret_refs FROM monitoring_providers WHERE provider <> kind ORDER BY provider;

-- name: seconds_until_next_due
SELECT extract(EPOCH FROM monitoring_next_delivery_due() - clock_timestamp())::float8;

-- name: queue
SELECT provider, pending + sending, oldest_age_seconds FROM monitoring_delivery_queue;

-- name: claim_health_checks
SELECT check_id, name, url, method, expected_status, timeout_seconds FROM monitoring_claim_health_checks(%(limit)s);

-- name: record_health_check
SELECT monitoring_record_health_check(%(check_id)s, %(status)s, %(response_ms)s, %(error)s);

-- name: ensure_health_check
SELECT monitoring_ensure_health_check(%(name)s, %(url)s, make_interval(secs => %(interval_seconds)s));

-- name: check_scheduler
-- raises (and later resolves) pgalert_scheduler_stalled: pg_cron cannot say that it stopped
SELECT last_run_at, seconds_since_run, running FROM monitoring_check_scheduler();

-- name: messages_to_poll
-- texts and calls whose final status never came (sql/outbox.sql says which and how often)
SELECT delivery_id, provider, kind, provider_reference FROM monitoring_messages_to_poll(%(limit)s);

-- name: message_polled
SELECT monitoring_message_polled(%(reference)s, %(status)s, %(error_code)s);

-- name: scheduler_mode
-- who runs pgalert's scheduled jobs for a dispatcher started with --scheduler (auto: pg_cron while it can)
SELECT mode, reason FROM monitoring_scheduler_mode(%(requested)s);

-- name: due_scheduled_jobs
SELECT job_name, tick, timeout_ms FROM monitoring_due_scheduled_jobs();

-- name: arm_job_timeout
-- a sql rule's job runs under its statement_timeout, as pg_cron's command arms it: for the next statement
SELECT set_config('statement_timeout', %(timeout_ms)s || 'ms', TRUE);

-- name: run_scheduled_job
SELECT monitoring_run_scheduled_job(%(job_name)s, %(tick)s, %(dispatcher)s);
