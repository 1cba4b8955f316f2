-- Routing: which providers an alert goes to, decided by the rows of monitoring_routes; the channels themselves.
--
-- Owns: monitoring_providers, monitoring_routes
-- (admins write both with SQL; the console changes a channel's non-secret settings through this file.)

-- No SET clause: a plain STABLE SQL function is inlined into the INSERT trigger's statement.
CREATE OR REPLACE FUNCTION monitoring_route_providers(p_alert_type text, p_severity text)
RETURNS SETOF text
LANGUAGE sql STABLE
AS $$
    SELECT r.provider
    FROM public.monitoring_routes AS r
    WHERE r.enabled
      AND CASE
          WHEN EXISTS (
              SELECT FROM public.monitoring_routes AS specific
              WHERE specific.alert_type = p_alert_type
                AND (specific.severity = p_severity OR specific.severity IS NULL)
          )
          THEN r.alert_type = p_alert_type AND (r.severity = p_severity OR r.severity IS NULL)
          ELSE r.alert_type IS NULL AND r.severity = p_severity
      END
$$;
COMMENT ON FUNCTION monitoring_route_providers(text, text) IS
'The providers an alert of this type and severity is delivered to, by monitoring_routes.';
-- readers and admins, who can read the routes it reads; an app needs no map of where its alerts go (earlier
-- releases granted it to writers, for whom it could only fail)
REVOKE ALL ON FUNCTION monitoring_route_providers(text, text) FROM PUBLIC, monitoring_writer;
GRANT EXECUTE ON FUNCTION monitoring_route_providers(text, text) TO monitoring_reader;

-- A new channel speaks its kind's API: it can be told what the kind's default channel can, and is a pager when
-- that one is, unless the INSERT says otherwise.
CREATE OR REPLACE FUNCTION _monitoring_channel_defaults()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_default public.monitoring_providers;
BEGIN
    SELECT * INTO v_default FROM public.monitoring_providers AS p WHERE p.provider = NEW.kind;
    NEW.actions := coalesce(NEW.actions, v_default.actions,
                            CASE WHEN NEW.kind = 'sentry' THEN ARRAY['trigger'] ELSE ARRAY['trigger', 'acknowledge', 'resolve'] END);
    NEW.is_pager := coalesce(NEW.is_pager, v_default.is_pager, NEW.kind IN ('pagerduty', 'opsgenie', 'jsm'));
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_channel_defaults() FROM PUBLIC;

CREATE OR REPLACE TRIGGER monitoring_providers_channel_defaults
BEFORE INSERT ON monitoring_providers
FOR EACH ROW EXECUTE FUNCTION _monitoring_channel_defaults();
COMMENT ON TRIGGER monitoring_providers_channel_defaults ON monitoring_providers IS
'A new channel takes its kind''s actions and pager role unless the INSERT says otherwise.';

-- A channel's description and non-secret settings (a default channel's settings are the dispatchers'
-- environment's, and stay); never secret_refs: which variables a channel's secrets come from stays with SQL and
-- the operator's list. An unknown channel is an error.
CREATE OR REPLACE FUNCTION _monitoring_set_channel_settings(p_provider text, p_description text, p_settings jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE public.monitoring_providers
    SET description = coalesce(p_description, description),
        settings = CASE WHEN provider = kind THEN settings ELSE p_settings END
    WHERE provider = p_provider;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no channel is named %', coalesce(quote_literal(p_provider), 'NULL')
            USING ERRCODE = 'no_data_found';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_set_channel_settings(text, text, jsonb) FROM PUBLIC;
