-- Every query `pgalert serve` runs, by name (dispatcher/inbound/app.py): each calls one function of
-- sql/inbound.sql, the whole interface of the role monitoring_inbound.

-- name: ready
SELECT monitoring_inbound_ready();

-- name: client
SELECT monitoring_inbound_client(%(token_sha256)s);

-- name: raise
SELECT alert_index, outcome, alert_id, error, client
FROM monitoring_inbound_raise(%(via)s, %(token_sha256)s, %(alerts)s);

-- name: act
SELECT outcome, alert_id, alert_status, actor
FROM monitoring_inbound_act(%(via)s, %(receipt_id)s, %(alert_id)s, %(action)s, %(actor)s, %(occurred_at)s,
                            %(note)s, %(slack_member_id)s);

-- name: find_alert
SELECT monitoring_inbound_find_alert(%(via)s, %(provider_key)s, %(reference)s);

-- name: contact_act
SELECT outcome, alert_id, alert_status, actor
FROM monitoring_inbound_contact_act(%(via)s, %(receipt_id)s, %(address)s, %(delivery_id)s, %(alert_id)s, %(action)s,
                                    %(occurred_at)s);

-- name: contact_status
SELECT monitoring_inbound_contact_status(%(reference)s, %(status)s, %(error_code)s);

-- name: contact_opt_out
SELECT monitoring_inbound_contact_opt_out(%(receipt_id)s, %(address)s, %(stop)s);
