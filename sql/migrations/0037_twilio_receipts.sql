-- pgalert 0037: a STOP or START texted to the Twilio number is recorded under its receipt, like every action from
-- outside, so a captured one sent again changes nothing (#35 item 10); before, a replayed STOP silenced a person's
-- texts again after they had texted START. The old two-argument function, which took no receipt, goes.

ALTER TABLE monitoring_inbound_actions DROP CONSTRAINT inbound_action_is_known;
ALTER TABLE monitoring_inbound_actions ADD CONSTRAINT inbound_action_is_known
CHECK (action IN ('acknowledge', 'resolve', 'unacknowledge', 'reopen', 'stop', 'start'));
COMMENT ON TABLE monitoring_inbound_actions IS
'Every acknowledge, resolve, unacknowledge or reopen that came from a provider, and every STOP or START texted to
the Twilio number: who, when they did it (occurred_at, the provider''s time), when pgalert heard it, and what it
changed (outcome). receipt_id is the provider''s id for the delivery (PagerDuty X-Webhook-Id, ...; for Twilio, a
digest of all its callback signed): a repeat is recorded once and acts once.';

DROP FUNCTION IF EXISTS monitoring_inbound_contact_opt_out(text, boolean);

INSERT INTO _monitoring_migrations (version, name) VALUES ('0037', 'twilio_receipts');
