-- pgalert 0040: what Twilio said became of each message and call, kept even when it is heard before the
-- dispatcher recorded the sid (#36 item 5). Twilio calls back within milliseconds of its 201 and never retries a
-- callback, so a status that found no message was lost: a text stayed succeeded, a call unanswered waited the
-- person's next rule's full delay. And a message whose final status never came is asked for (polled).

CREATE TABLE monitoring_message_statuses (
    provider_reference text PRIMARY KEY,
    status text NOT NULL,
    error_code text,
    heard_via text NOT NULL,
    heard_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT message_status_heard_via_is_known CHECK (heard_via IN ('callback', 'poll'))
);
CREATE INDEX monitoring_message_statuses_heard ON monitoring_message_statuses (heard_at);
COMMENT ON TABLE monitoring_message_statuses IS
'What the provider last said of a message or call to a contact method (Twilio''s sid as provider_reference): its
status (queued, sent, delivered, undelivered, failed; ringing, completed, busy, no-answer, canceled, ...) and
error code, heard_via callback (Twilio called pgalert serve) or poll (the dispatcher asked Twilio), at heard_at.
A status heard before the message''s sid was recorded waits here and is applied when it is. Kept two days.';
COMMENT ON COLUMN monitoring_message_statuses.heard_via IS
'callback: Twilio''s status callback to pgalert serve; poll: the dispatcher fetched the message or call because its
final status had not come.';

-- the messages to contact methods sent lately, which the dispatcher polls while their final status is unknown
CREATE INDEX monitoring_deliveries_contact_sent ON monitoring_deliveries (completed_at)
WHERE context ? 'contact_method_id' AND provider_reference IS NOT NULL;

REVOKE ALL ON monitoring_message_statuses FROM PUBLIC;
GRANT SELECT ON monitoring_message_statuses TO monitoring_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON monitoring_message_statuses TO monitoring_dispatcher;

-- what a status callback did is now _monitoring_message_heard (sql/outbox.sql), which also keeps an early one
DROP FUNCTION IF EXISTS _monitoring_message_not_received(text, text);

INSERT INTO _monitoring_migrations (version, name) VALUES ('0040', 'message_statuses');
