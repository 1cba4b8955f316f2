-- pgalert 0030: reach the person on call directly (sql/paging.sql): verified contact methods (SMS and voice
-- through Twilio, push through ntfy, email, a Slack DM), each person's notification rules ("push at once, SMS
-- after 2 minutes, call after 5"), and the pages that run those rules until the alert is acknowledged or resolved.
-- Two channel kinds carry them: twilio (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM_NUMBER) and ntfy
-- (NTFY_SERVER_URL, NTFY_TOKEN).

ALTER TABLE monitoring_providers DROP CONSTRAINT kind_is_known;
ALTER TABLE monitoring_providers ADD CONSTRAINT kind_is_known
CHECK (kind IN ('pagerduty', 'opsgenie', 'jsm', 'slack', 'teams', 'sentry', 'webhook', 'email', 'twilio', 'ntfy'));

-- they take pages only: no route sends an alert's trigger to a phone number nobody named
INSERT INTO monitoring_providers (provider, kind, actions, is_pager, description) VALUES
('twilio', 'twilio', ARRAY['notify'], FALSE, 'Twilio: SMS and voice calls to verified phone numbers'),
('ntfy', 'ntfy', ARRAY['notify'], FALSE, 'ntfy: push notifications to verified topics')
ON CONFLICT (provider) DO NOTHING;

CREATE TABLE monitoring_contact_methods (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id bigint NOT NULL REFERENCES monitoring_people (id) ON DELETE CASCADE,
    kind text NOT NULL CONSTRAINT contact_kind_is_known CHECK (kind IN ('sms', 'voice', 'push', 'email', 'slack')),
    address text NOT NULL,
    enabled boolean NOT NULL DEFAULT TRUE,
    verified_at timestamptz,
    opted_out_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT phone_is_e164 CHECK (kind NOT IN ('sms', 'voice') OR address ~ '^\+[1-9][0-9]{6,14}$'),
    CONSTRAINT push_is_a_topic CHECK (kind <> 'push' OR address ~ '^[A-Za-z0-9_-]{1,64}$'),
    CONSTRAINT email_is_an_address CHECK (kind <> 'email' OR address ~ '^[^@\s]+@[^@\s]+$'),
    CONSTRAINT slack_is_a_member_id CHECK (kind <> 'slack' OR address ~ '^[UW][A-Z0-9]{2,}$'),
    CONSTRAINT one_method_per_address UNIQUE (person_id, kind, address),
    CONSTRAINT method_belongs_to_person UNIQUE (id, person_id)
);
COMMENT ON TABLE monitoring_contact_methods IS
'How a person can be reached: sms and voice (an E.164 number, +14155550100), push (an ntfy topic on the ntfy
channel''s server), email, slack (a member id, for a DM). A method gets nothing until it is verified (a code sent
to it, confirmed with monitoring_verify_contact_method), while it is disabled, and while its owner opted out (texted
STOP to the Twilio number; START opts in again). Admins add, disable and remove methods; the address of a
verified method cannot change: add the new one.';

CREATE TABLE monitoring_contact_verifications (
    contact_method_id bigint PRIMARY KEY REFERENCES monitoring_contact_methods (id) ON DELETE CASCADE,
    code_sha256 bytea NOT NULL,
    sent_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    failed_tries integer NOT NULL DEFAULT 0
);
COMMENT ON TABLE monitoring_contact_verifications IS
'Internal: the code last sent to a contact method, as a SHA-256 (the code itself goes only into the message that
carries it, and is taken out of that delivery when it completes); it expires after 15 minutes or 5 wrong tries.';

CREATE TABLE monitoring_notification_rules (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id bigint NOT NULL REFERENCES monitoring_people (id) ON DELETE CASCADE,
    contact_method_id bigint NOT NULL,
    delay interval NOT NULL DEFAULT '0'
    CONSTRAINT delay_is_within_an_hour CHECK (delay >= interval '0' AND delay <= interval '1 hour'),
    CONSTRAINT one_rule_per_method_and_delay UNIQUE (person_id, contact_method_id, delay),
    CONSTRAINT rule_uses_own_method FOREIGN KEY (contact_method_id, person_id)
    REFERENCES monitoring_contact_methods (id, person_id) ON DELETE CASCADE
);
COMMENT ON TABLE monitoring_notification_rules IS
'A person''s own way of being woken: each rule is a contact method and a delay after they are paged, e.g. push
at 0, sms at 2 minutes, voice at 5 minutes. Rules run until the alert is acknowledged or resolved; a method that
fails (or is over its rate limit) hands over to the next rule at once.';

CREATE TABLE monitoring_person_pages (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id bigint NOT NULL REFERENCES monitoring_alerts (id) ON DELETE CASCADE,
    person_id bigint NOT NULL REFERENCES monitoring_people (id) ON DELETE CASCADE,
    started_at timestamptz NOT NULL,
    reason text NOT NULL DEFAULT '',
    finished_at timestamptz,
    finish_reason text,
    CONSTRAINT one_page_per_alert_and_person UNIQUE (alert_id, person_id)
);
CREATE INDEX monitoring_person_pages_running ON monitoring_person_pages (alert_id) WHERE finished_at IS NULL;
COMMENT ON TABLE monitoring_person_pages IS
'A person being paged for an alert (an escalation step named them, or a test page): their notification rules
run from started_at until the alert is acknowledged or resolved. Each message is a delivery whose target is
page:<page id>:<rule id>.';

-- what was sent to one contact method lately (its rate limits); only the messages to contact methods are indexed
CREATE INDEX monitoring_deliveries_to_contact ON monitoring_deliveries ((context ->> 'contact_method_id'), created_at)
WHERE context ? 'contact_method_id';
-- and which message a provider's status callback is about (its sid)
CREATE INDEX monitoring_deliveries_contact_reference ON monitoring_deliveries (provider_reference)
WHERE context ? 'contact_method_id';

REVOKE ALL ON monitoring_contact_methods, monitoring_contact_verifications, monitoring_notification_rules,
monitoring_person_pages FROM PUBLIC;
GRANT SELECT ON monitoring_contact_methods, monitoring_notification_rules, monitoring_person_pages TO monitoring_reader;
GRANT SELECT, DELETE ON monitoring_contact_methods TO monitoring_admin;
GRANT INSERT (person_id, kind, address, enabled), UPDATE (enabled) ON monitoring_contact_methods TO monitoring_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON monitoring_notification_rules TO monitoring_admin;
GRANT SELECT ON monitoring_person_pages TO monitoring_admin;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0030', 'paging');
