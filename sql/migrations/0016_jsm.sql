-- pgalert 0016: Jira Service Management Operations, Opsgenie's successor (Opsgenie's API ends on 2027-04-05), as
-- a provider beside it. No route sends to it until you move one (README: "From Opsgenie to JSM").

INSERT INTO monitoring_providers (provider, actions, is_pager, description) VALUES
('jsm', ARRAY['trigger', 'acknowledge', 'resolve'], TRUE, 'Jira Service Management Operations (Opsgenie''s successor)')
ON CONFLICT (provider) DO NOTHING;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0016', 'jsm');
