-- Every query the `pgalert` commands run, by name (dispatcher/cli.py). The logic lives in the SQL functions
-- these call; each command runs as the login it is given, with that login's rights.

-- name: create_api_client
SELECT monitoring_create_api_client(%(name)s, %(token_sha256)s);

-- name: revoke_api_client
SELECT monitoring_revoke_api_client(%(name)s);

-- name: list_api_clients
SELECT name, created_at, created_by, revoked_at FROM monitoring_api_clients ORDER BY name;

-- name: create_silence
SELECT monitoring_create_silence(%(matchers)s, %(ends_at)s, %(comment)s);

-- name: list_silences
-- what each silence holds now
SELECT s.id, s.matchers::text AS matchers, s.starts_at, least(s.ends_at, s.expired_at) AS ends_at,
       s.created_by, s.comment,
       (SELECT count(*) FROM monitoring_notification_holds AS h
        WHERE h.reason = 'silence' AND h.cause_id = s.id AND h.released_at IS NULL) AS holding
FROM monitoring_silences AS s
WHERE %(show_all)s OR (s.expired_at IS NULL AND s.ends_at > now())
ORDER BY s.id;

-- name: expire_silence
SELECT monitoring_expire_silence(%(silence_id)s);

-- name: sla_summary
SELECT * FROM monitoring_get_sla_summary(%(hours)s::numeric);

-- name: sla_breakdown
SELECT * FROM monitoring_get_sla_breakdown(%(dimension)s, %(hours)s::numeric);

-- name: oncall_schedules
SELECT name FROM monitoring_oncall_schedules ORDER BY name;

-- name: who_is_on_call
SELECT person, is_override, shift_ends_at FROM monitoring_who_is_on_call(%(schedule)s);

-- name: oncall_timeline
SELECT * FROM monitoring_oncall_timeline(%(schedule)s, now(), now() + make_interval(days => %(days)s));

-- name: save_console_user
SELECT monitoring_console_save_user(%(login)s, %(display_name)s, %(role)s, %(password_hash)s, %(person)s);

-- name: console_user
SELECT display_name, role FROM monitoring_console_users WHERE login = %(login)s;

-- name: disable_console_user
SELECT monitoring_console_disable_user(%(login)s);

-- name: list_console_users
SELECT login, display_name, role, created_at, disabled_at FROM monitoring_console_users ORDER BY login;
