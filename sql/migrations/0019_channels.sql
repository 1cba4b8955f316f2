-- pgalert 0019: channels as data. A row of monitoring_providers is a channel: a name (what routes and deliveries
-- name), a kind (which provider's API it speaks), its non-secret settings, and references to its secrets by
-- name, never the secrets. The six rows so far are the default channel of each kind, configured by today's
-- environment variables, so nothing changes for an installation that adds no channel.

ALTER TABLE monitoring_providers
ADD COLUMN kind text,
ADD COLUMN settings jsonb NOT NULL DEFAULT '{}',
ADD COLUMN secret_refs jsonb NOT NULL DEFAULT '{}';
UPDATE monitoring_providers SET kind = provider;
ALTER TABLE monitoring_providers ALTER COLUMN kind SET NOT NULL;
-- a new channel takes its kind's actions and is_pager unless it says otherwise (_monitoring_channel_defaults)
ALTER TABLE monitoring_providers ALTER COLUMN is_pager DROP DEFAULT;
ALTER TABLE monitoring_providers
ADD CONSTRAINT kind_is_known CHECK (kind IN ('pagerduty', 'opsgenie', 'jsm', 'slack', 'sentry', 'webhook')),
ADD CONSTRAINT settings_is_an_object CHECK (jsonb_typeof(settings) = 'object'),
-- a secret is named, never stored: {"routing_key": "env:PAGERDUTY_KEY_PAYMENTS"}
ADD CONSTRAINT secrets_are_references CHECK (
    jsonb_typeof(secret_refs) = 'object'
    AND NOT jsonb_path_exists(secret_refs, 'strict $.* ? (@.type() != "string" || !(@ like_regex "^env:[A-Z_][A-Z0-9_]{0,127}$"))')
),
-- a default channel is configured by its kind's environment variables; only added channels carry references
ADD CONSTRAINT default_channels_use_the_environment CHECK (provider <> kind OR (settings = '{}' AND secret_refs = '{}'));

COMMENT ON TABLE monitoring_providers IS
'Channels: where alerts can be delivered. provider: the channel''s name, which routes and deliveries use; kind:
the API it speaks (pagerduty, opsgenie, jsm, slack, sentry, webhook). The channel named as its kind is the
default one, configured by the dispatcher''s environment (PAGERDUTY_INTEGRATION_KEY, SLACK_WEBHOOK_URL, ...);
others carry non-secret settings and secret_refs, references to the dispatcher''s environment such as
{"routing_key": "env:PAGERDUTY_KEY_PAYMENTS"}, never a secret. actions: what the channel can be told (trigger,
acknowledge, resolve, notify); is_pager: a failed critical page is raised again through the other pagers.
Acknowledges and resolves go to the channel that got the trigger; pacing and 429 pauses are per channel.';
COMMENT ON COLUMN monitoring_providers.settings IS
'Non-secret settings by kind: pagerduty {"events_url"}, opsgenie and jsm {"api_url"}, webhook {"url"}; slack
{"label"} (shown only to people: the webhook URL, which names the Slack channel, is a secret).';
COMMENT ON COLUMN monitoring_providers.secret_refs IS
'The channel''s secrets, each as "env:NAME" (an environment variable of the dispatcher): pagerduty
{"routing_key"}, opsgenie and jsm {"api_key"}, slack {"webhook_url"}, sentry {"dsn"} or {"webhook_url"},
webhook {"signing_secret"}.';

INSERT INTO _monitoring_migrations (version, name) VALUES ('0019', 'channels');
