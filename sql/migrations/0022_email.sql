-- pgalert 0022: email over SMTP, for teams that page by mail: the default channel `email` (EMAIL_SMTP_URL,
-- EMAIL_FROM, EMAIL_TO) and the kind for more. No route sends to it until you add one.

ALTER TABLE monitoring_providers DROP CONSTRAINT kind_is_known;
ALTER TABLE monitoring_providers ADD CONSTRAINT kind_is_known
CHECK (kind IN ('pagerduty', 'opsgenie', 'jsm', 'slack', 'teams', 'sentry', 'webhook', 'email'));
-- the password is a secret reference; a URL such as smtp://user:password@host would store it in the database
ALTER TABLE monitoring_providers ADD CONSTRAINT smtp_url_carries_no_credentials
CHECK (kind <> 'email' OR coalesce(settings ->> 'smtp_url', '') !~ '^[^/]*//[^/]*@');

INSERT INTO monitoring_providers (provider, kind, actions, is_pager, description) VALUES
('email', 'email', ARRAY['trigger', 'acknowledge', 'resolve', 'notify'], FALSE, 'Email over SMTP')
ON CONFLICT (provider) DO NOTHING;

COMMENT ON COLUMN monitoring_providers.kind IS
'The API the channel speaks: pagerduty, opsgenie, jsm, slack, teams (Workflows webhook: secret_refs
{"webhook_url"}), sentry, webhook, email (SMTP: settings {"smtp_url", "from", "to", "username"}, secret_refs
{"password"}; a page goes to the address on call when the rotation knows it).';

INSERT INTO _monitoring_migrations (version, name) VALUES ('0022', 'email');
