-- pgalert 0042: a person's email and phone are their secrets, as a contact method's address is (#35 item 2).
-- - Readers read every column of monitoring_people but email and phone; monitoring_who_is_on_call shows them
--   masked to everyone but admins and the dispatcher.
-- - An escalation's page names its person by id; the dispatcher's claim puts in the email and phone when it is
--   sent, so the outbox that readers read keeps neither.

UPDATE monitoring_deliveries AS d
SET context = d.context - 'email' - 'phone' || jsonb_build_object('person_id', p.id)
FROM monitoring_people AS p
WHERE starts_with(d.target, 'escalation:') AND d.context ?| ARRAY['email', 'phone'] AND p.name = d.context ->> 'person';
-- a page whose person was renamed or deleted since: its addresses go all the same
UPDATE monitoring_deliveries
SET context = context - 'email' - 'phone'
WHERE starts_with(target, 'escalation:') AND context ?| ARRAY['email', 'phone'];

REVOKE SELECT ON monitoring_people FROM monitoring_reader;
GRANT SELECT (id, name, slack_member_id) ON monitoring_people TO monitoring_reader, monitoring_dispatcher;
GRANT SELECT (email, phone) ON monitoring_people TO monitoring_dispatcher;
GRANT SELECT ON monitoring_people TO monitoring_admin;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0042', 'people_secrets');
