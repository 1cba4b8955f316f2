-- The console's named queries (`-- name: NAME` before each), run by pgalert serve's login as monitoring_console.
-- Reads go to the tables a monitoring_reader reads; every change is a monitoring_console_* function, given the
-- person's session token, which checks their role (sql/console.sql).

-- name: alerts
-- the open-alerts page, newest first, with where each went and what holds it
SELECT a.id, a.alert_type, a.severity, a.title, a.source, a.status, a.created_at, a.last_seen_at,
       a.occurrence_count, a.acknowledged_by, a.acknowledged_via, a.resolved_by, a.details -> 'labels' AS labels,
       (SELECT jsonb_agg(jsonb_build_object('provider', d.provider, 'status', d.status) ORDER BY d.id)
        FROM monitoring_deliveries AS d WHERE d.alert_id = a.id AND d.action = 'trigger') AS deliveries,
       (SELECT jsonb_agg(jsonb_build_object('reason', h.reason, 'held_by', h.held_by) ORDER BY h.id)
        FROM monitoring_notification_holds AS h WHERE h.alert_id = a.id AND h.released_at IS NULL) AS holds,
       EXISTS (SELECT FROM monitoring_flapping AS f WHERE f.alert_id = a.id AND f.settled_at IS NULL) AS flapping,
       (SELECT m.group_alert_id FROM monitoring_alert_group_members AS m WHERE m.alert_id = a.id LIMIT 1)
       AS grouped_into
FROM monitoring_alerts AS a
WHERE CASE %(status)s WHEN 'active' THEN a.status <> 'resolved' ELSE a.status = %(status)s END
  AND (%(severity)s::text IS NULL OR a.severity = %(severity)s)
  AND (%(alert_type)s::text IS NULL OR a.alert_type = %(alert_type)s)
  AND (%(source)s::text IS NULL OR a.source = %(source)s)
  AND (%(label_key)s::text IS NULL OR a.details -> 'labels' ->> %(label_key)s::text = %(label_value)s)
  AND (%(q)s::text IS NULL OR strpos(lower(a.title || ' ' || a.message || ' ' || a.alert_type || ' ' || a.dedup_key),
                                     lower(%(q)s)) > 0)
ORDER BY a.id DESC
LIMIT %(limit)s;

-- name: alert
SELECT * FROM monitoring_alerts WHERE id = %(alert_id)s;

-- name: alert_deliveries
SELECT id, provider, action, target, status, attempts, next_attempt_at, created_at, completed_at, last_error,
       last_http_status, context -> 'contact' AS contact, context ->> 'person' AS person
FROM monitoring_deliveries WHERE alert_id = %(alert_id)s ORDER BY id;

-- name: alert_attempts
SELECT t.delivery_id, t.attempt, t.dispatcher, t.started_at, t.finished_at, t.outcome, t.http_status, t.error
FROM monitoring_delivery_attempts AS t
JOIN monitoring_deliveries AS d ON d.id = t.delivery_id
WHERE d.alert_id = %(alert_id)s
ORDER BY t.finished_at, t.delivery_id, t.attempt
LIMIT 2000;

-- name: alert_holds
SELECT reason, held_by, held_at, released_at, release_reason FROM monitoring_notification_holds
WHERE alert_id = %(alert_id)s ORDER BY id;

-- name: alert_escalations
SELECT policy_name, steps, started_at, next_index, next_step_at, level_reached, finished_at, finish_reason,
       (SELECT string_agg(h.held_by, ', ' ORDER BY h.id) FROM monitoring_notification_holds AS h
        WHERE h.alert_id = e.alert_id AND h.released_at IS NULL) AS held_by
FROM monitoring_alert_escalations AS e WHERE alert_id = %(alert_id)s;

-- name: alert_inbound
SELECT via, action, actor, occurred_at, received_at, outcome FROM monitoring_inbound_actions
WHERE alert_id = %(alert_id)s ORDER BY id;

-- name: version
-- what changes when any page of the console would: the open alerts' states, new alerts, deliveries moving
SELECT concat_ws(':',
    (SELECT md5(coalesce(string_agg(a.id || '.' || a.status || '.' || a.occurrence_count || '.' || a.severity, ','
                                    ORDER BY a.id), ''))
     FROM monitoring_alerts AS a WHERE a.status <> 'resolved'),
    (SELECT coalesce(max(a.id), 0) FROM monitoring_alerts AS a),
    (SELECT coalesce(max(d.id), 0) FROM monitoring_deliveries AS d),
    (SELECT count(*) FROM monitoring_deliveries AS d WHERE d.completed_at IS NULL)
);

-- name: listen
LISTEN monitoring_deliveries;

-- name: session
SELECT user_id, login, display_name, role, expires_at FROM monitoring_console_session(%(token)s);

-- name: begin_sign_in
SELECT attempt, argon2_settings, hash_length FROM monitoring_console_begin_sign_in(%(login)s, %(client)s);

-- name: finish_sign_in
SELECT monitoring_console_finish_sign_in(%(login)s, %(attempt)s, %(derived_hash)s, %(token)s,
                                         make_interval(secs => %(hours)s * 3600));

-- name: proxy_session
SELECT monitoring_console_proxy_session(%(login)s, %(token)s, make_interval(secs => %(hours)s * 3600));

-- name: sign_out
SELECT monitoring_console_sign_out(%(token)s);

-- name: acknowledge
SELECT monitoring_console_acknowledge(%(token)s, %(alert_ids)s, %(note)s);

-- name: resolve
SELECT monitoring_console_resolve(%(token)s, %(alert_ids)s, %(note)s, %(false_positive)s);

-- name: reopen
SELECT monitoring_console_reopen(%(token)s, %(alert_id)s);

-- name: silences
SELECT s.id, s.matchers, s.starts_at, s.ends_at, s.created_by, s.comment, s.created_at, s.expired_at, s.expired_by,
       (SELECT count(*) FROM monitoring_notification_holds AS h
        WHERE h.reason = 'silence' AND h.cause_id = s.id AND h.released_at IS NULL) AS holding
FROM monitoring_silences AS s
WHERE s.expired_at IS NULL AND s.ends_at > now() OR s.ends_at > now() - interval '7 days'
ORDER BY (s.expired_at IS NULL AND s.ends_at > now()) DESC, s.ends_at DESC
LIMIT 200;

-- name: silence
SELECT id, matchers, starts_at, ends_at, comment FROM monitoring_silences WHERE id = %(silence_id)s;

-- name: silence_preview
SELECT a.id, a.title, a.alert_type, a.severity, a.status
FROM monitoring_silence_preview(%(matchers)s) AS p
JOIN monitoring_alerts AS a ON a.id = p.alert_id
ORDER BY a.id DESC;

-- name: create_silence
SELECT monitoring_console_create_silence(%(token)s, %(matchers)s, %(ends_at)s, %(comment)s, %(starts_at)s);

-- name: expire_silence
SELECT monitoring_console_expire_silence(%(token)s, %(silence_id)s);

-- name: sla_summary
SELECT * FROM monitoring_get_sla_summary(%(hours)s, %(at)s);

-- name: sla_breakdown
SELECT * FROM monitoring_get_sla_breakdown(%(dimension)s, %(hours)s, %(at)s);

-- name: sla_daily
-- each of the last 30 days as the SQL function sees that day: the charts equal its figures by construction
SELECT d.day, s.metric, s.unit, s.samples, s.p50, s.p95, s.mean
FROM generate_series(date_trunc('day', %(at)s::timestamptz) - interval '29 days',
                     date_trunc('day', %(at)s::timestamptz), interval '1 day') AS d (day)
CROSS JOIN LATERAL monitoring_get_sla_summary(24, least(d.day + interval '1 day', %(at)s::timestamptz)) AS s
WHERE s.metric IN ('mttd', 'mtta', 'mttr', 'false_positive_rate')
ORDER BY d.day, s.metric;

-- name: channels
SELECT * FROM monitoring_channel_health();

-- name: schedules
SELECT s.name, s.time_zone, s.rotation_length, w.person, w.is_override, w.shift_ends_at
FROM monitoring_oncall_schedules AS s
LEFT JOIN LATERAL monitoring_who_is_on_call(s.name) AS w ON TRUE
ORDER BY s.name;

-- name: shifts
-- four weeks of every schedule's shifts, in one query for the whole page
SELECT s.name AS schedule, t.starts_at, t.ends_at, t.person, t.is_override
FROM monitoring_oncall_schedules AS s
CROSS JOIN LATERAL monitoring_oncall_timeline(s.name, date_trunc('day', now()),
                                              date_trunc('day', now()) + interval '28 days') AS t
ORDER BY s.name, t.starts_at;

-- name: people
SELECT name FROM monitoring_people ORDER BY name;

-- name: contacts
SELECT person, methods FROM monitoring_console_contacts(%(token)s);

-- name: test_page
SELECT monitoring_console_test_page(%(token)s, %(person)s) AS alert_id;

-- name: policies
SELECT p.name, p.repeat_count, p.repeat_after, p.description,
       coalesce(jsonb_agg(jsonb_build_object('step', st.step, 'delay', st.delay::text, 'target_type', st.target_type,
                                             'schedule', sc.name, 'person', pe.name) ORDER BY st.delay, st.step)
                FILTER (WHERE st.step IS NOT NULL), '[]') AS steps
FROM monitoring_escalation_policies AS p
LEFT JOIN monitoring_escalation_steps AS st ON st.policy_id = p.id
LEFT JOIN monitoring_oncall_schedules AS sc ON sc.id = st.schedule_id
LEFT JOIN monitoring_people AS pe ON pe.id = st.person_id
GROUP BY p.id
ORDER BY p.name;

-- name: escalating
SELECT a.id, a.title, a.severity, a.status, e.policy_name, e.next_index, e.next_step_at, e.level_reached,
       jsonb_array_length(e.steps) AS step_count,
       (SELECT string_agg(h.held_by, ', ' ORDER BY h.id) FROM monitoring_notification_holds AS h
        WHERE h.alert_id = e.alert_id AND h.released_at IS NULL) AS held_by
FROM monitoring_alert_escalations AS e
JOIN monitoring_alerts AS a ON a.id = e.alert_id
WHERE e.finished_at IS NULL
ORDER BY e.next_step_at NULLS LAST, a.id DESC
LIMIT 200;

-- name: add_override
SELECT monitoring_console_add_override(%(token)s, %(schedule)s, %(person)s, %(from)s, %(until)s, %(reason)s);

-- name: rules
SELECT rule_name, rule_type, event_type, window_size::text AS window_size, comparison, threshold, severity, enabled,
       last_evaluated_at, last_observed, last_error, last_error_at, description, runbook_url
FROM monitoring_alert_rules
ORDER BY rule_name;

-- name: set_rule_enabled
SELECT monitoring_console_set_rule_enabled(%(token)s, %(rule)s, %(enabled)s);

-- name: backtest
SELECT would_fire_at, group_key, observed, cleared_at
FROM monitoring_backtest_rule(%(rule)s, now() - make_interval(days => %(days)s), now())
ORDER BY would_fire_at
LIMIT 500;

-- name: windows
SELECT w.name, w.matchers, w.time_zone, w.starts_at, w.ends_at, w.days_of_week, w.start_time::text AS start_time,
       w.duration::text AS duration, w.comment, w.created_by, w.enabled,
       _monitoring_window_is_open(w, now()) AS open_now,
       (SELECT count(*) FROM monitoring_notification_holds AS h
        WHERE h.reason = 'maintenance' AND h.cause_id = w.id AND h.released_at IS NULL) AS holding
FROM monitoring_maintenance_windows AS w
ORDER BY w.enabled DESC, w.name;

-- name: save_window
SELECT monitoring_console_save_window(%(token)s, %(name)s, %(matchers)s, %(time_zone)s, %(starts_at)s, %(ends_at)s,
                                      %(days_of_week)s, %(start_time)s, %(duration)s, %(comment)s);

-- name: set_window_enabled
SELECT monitoring_console_set_window_enabled(%(token)s, %(name)s, %(enabled)s);

-- name: extend_silence
SELECT monitoring_console_extend_silence(%(token)s, %(silence_id)s, %(ends_at)s);

-- name: users
SELECT u.login, u.display_name, u.role, u.created_at, u.disabled_at, p.name AS person
FROM monitoring_console_users AS u
LEFT JOIN monitoring_people AS p ON p.id = u.person_id
ORDER BY u.disabled_at IS NOT NULL, u.login;

-- name: save_user
SELECT monitoring_console_save_user_as_admin(%(token)s, %(login)s, %(display_name)s, %(role)s, %(password_hash)s);

-- name: disable_user
SELECT monitoring_console_disable_user_as_admin(%(token)s, %(login)s);

-- name: channel_settings
SELECT provider, kind, settings FROM monitoring_providers ORDER BY provider;

-- name: set_channel
SELECT monitoring_console_set_channel(%(token)s, %(provider)s, %(description)s, %(settings)s);

-- name: scheduler
-- who runs the scheduled jobs (rules among them): the last heartbeat says pg_cron or the dispatchers
SELECT s.running, s.seconds_since_run, h.beat_at IS NOT NULL AND h.beat_at = h.cron_beat_at AS by_pg_cron,
       d.problem AS pg_cron_problem
FROM monitoring_scheduler_status() AS s
CROSS JOIN monitoring_scheduler_heartbeat AS h
LEFT JOIN monitoring_scheduler_diagnosis() AS d ON TRUE;
