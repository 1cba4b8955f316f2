-- Every query the dispatcher runs, by name. The logic lives in the SQL functions these call.

-- name: listen
LISTEN monitoring_deliveries;

-- name: ping
SELECT 1;

-- name: claim
SELECT delivery_id, attempt, provider, action, target, context, provider_key, alert
FROM monitoring_claim_deliveries(%(dispatcher)s, %(limit)s, make_interval(secs => %(lease_seconds)s));

-- name: complete
SELECT monitoring_complete_deliveries(%(dispatcher)s, %(results)s);

-- name: release
SELECT monitoring_release_deliveries(%(dispatcher)s, %(delivery_ids)s);

-- name: reserve_slots
SELECT granted, extract(EPOCH FROM next_free_at - clock_timestamp())::float8 AS wait_seconds
FROM monitoring_reserve_send_slots(
    %(provider)s, %(count)s, make_interval(secs => %(interval_seconds)s), %(burst)s
);

-- name: seconds_until_next_due
SELECT extract(EPOCH FROM monitoring_next_delivery_due() - clock_timestamp())::float8;

-- name: queue
SELECT provider, pending + sending, oldest_age_seconds FROM monitoring_delivery_queue;
