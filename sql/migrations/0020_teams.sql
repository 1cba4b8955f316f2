-- pgalert 0020: Microsoft Teams, through a Workflows webhook (Office 365 connectors are retired): the default
-- channel `teams` (TEAMS_WEBHOOK_URL) and the kind for more. No route sends to it until you add one.

ALTER TABLE monitoring_providers DROP CONSTRAINT kind_is_known;
ALTER TABLE monitoring_providers ADD CONSTRAINT kind_is_known
CHECK (kind IN ('pagerduty', 'opsgenie', 'jsm', 'slack', 'teams', 'sentry', 'webhook'));

INSERT INTO monitoring_providers (provider, kind, actions, is_pager, description) VALUES
('teams', 'teams', ARRAY['trigger', 'acknowledge', 'resolve', 'notify'], FALSE, 'Microsoft Teams Workflows webhook')
ON CONFLICT (provider) DO NOTHING;

COMMENT ON COLUMN monitoring_providers.kind IS
'The API the channel speaks: pagerduty, opsgenie, jsm, slack, teams (Workflows webhook: secret_refs
{"webhook_url"}), sentry, webhook.';

INSERT INTO _monitoring_migrations (version, name) VALUES ('0020', 'teams');
