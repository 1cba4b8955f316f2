-- pgalert 0038: a contact method's address and its verification code are secrets (#35, items 2 and 8).
-- - Whoever knows a push topic on a public ntfy server reads its pages, Acknowledge links included, so an address
--   is its person's and the admins': readers read every column but the address (monitoring_contacts shows it
--   masked), and a message's delivery keeps only the kind and a masked address; the dispatcher's claim puts the
--   address in, from the method, when it is sent.
-- - A code waits in its verification row, which only the sending dispatcher's claim reads, never in the outbox
--   that admins and readers read; and a try is a row of its own, judged only once it is committed, so rolling back
--   takes back nothing.
-- - The claim reads the methods to refuse a message to one not verified at the time of sending.

ALTER TABLE monitoring_contact_verifications ADD COLUMN code text;
COMMENT ON TABLE monitoring_contact_verifications IS
'Internal: the code last sent to a contact method, as a SHA-256, and the code itself until its message is sent
(the sending dispatcher''s claim reads it; no other role does); it expires after 15 minutes or 5 tries.';

CREATE TABLE monitoring_contact_verification_tries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contact_method_id bigint NOT NULL REFERENCES monitoring_contact_verifications (contact_method_id) ON DELETE CASCADE,
    code_sha256 bytea NOT NULL,
    tried_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- the transaction that made it: a try is judged only by another one, so only once it is committed
    tried_in xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX monitoring_contact_verification_tries_method ON monitoring_contact_verification_tries (contact_method_id);
COMMENT ON TABLE monitoring_contact_verification_tries IS
'Internal: a code typed back for a contact method, as a SHA-256. It is judged only once committed, so a caller who
rolls back learns nothing, and every committed try counts: more than 5 end the code.';
REVOKE ALL ON monitoring_contact_verification_tries FROM PUBLIC;

-- pending codes leave the outbox for their verification row; delivered ones were already taken out
UPDATE monitoring_contact_verifications AS v SET code = d.context ->> 'code'
FROM monitoring_deliveries AS d
WHERE d.target = 'verify:' || v.contact_method_id AND d.context ? 'code' AND d.completed_at IS NULL;
-- a message keeps who and how, not where (this migration cannot call monitoring_mask_contact_address: all masked)
UPDATE monitoring_deliveries
SET
    context = context - 'code' - 'email' - 'slack_member_id'
    || jsonb_build_object('contact', jsonb_build_object('kind', context -> 'contact' ->> 'kind', 'shown', '••••'))
WHERE context ? 'contact_method_id' AND context ? 'contact';
UPDATE monitoring_deliveries
SET context = context || jsonb_build_object('reason', 'your pgalert verification code')
WHERE starts_with(target, 'verify:') AND context ? 'contact_method_id';

REVOKE SELECT ON monitoring_contact_methods FROM monitoring_reader;
GRANT SELECT (id, person_id, kind, enabled, verified_at, opted_out_at, created_at) ON monitoring_contact_methods
TO monitoring_reader, monitoring_dispatcher;
GRANT SELECT (address) ON monitoring_contact_methods TO monitoring_dispatcher;
GRANT SELECT (contact_method_id, code, expires_at) ON monitoring_contact_verifications TO monitoring_dispatcher;

-- a try is recorded, and judged later (monitoring_contact_method_verified): it returns nothing now
DROP FUNCTION IF EXISTS monitoring_verify_contact_method(bigint, text);

INSERT INTO _monitoring_migrations (version, name) VALUES ('0038', 'contact_secrets');
