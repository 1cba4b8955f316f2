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

-- name: add_contact_method
SELECT monitoring_add_contact_method(%(person)s, %(kind)s, %(address)s);

-- name: send_verification_code
SELECT monitoring_send_verification_code(%(method_id)s);

-- name: verify_contact_method
SELECT monitoring_verify_contact_method(%(method_id)s, %(code)s);

-- name: contact_method_verified
SELECT monitoring_contact_method_verified(%(method_id)s);

-- name: list_contact_methods
SELECT id, person, kind, address_shown AS address, enabled, verified_at, opted_out_at, rule_delays
FROM monitoring_contacts
WHERE %(person)s::text IS NULL OR person = %(person)s
ORDER BY person, kind, id;

-- name: add_notification_rule
INSERT INTO monitoring_notification_rules (person_id, contact_method_id, delay)
SELECT m.person_id, m.id, %(delay)s::interval FROM monitoring_contact_methods AS m WHERE m.id = %(method_id)s
RETURNING id;

-- name: test_page
SELECT monitoring_test_page(%(person)s);

-- name: test_page_messages
SELECT context -> 'contact' ->> 'kind' AS kind, context -> 'contact' ->> 'shown' AS address, provider AS channel,
       status, last_error
FROM monitoring_deliveries WHERE alert_id = %(alert_id)s ORDER BY id;
