-- Routing: which providers an alert goes to, decided by the rows of monitoring_routes.

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
REVOKE ALL ON FUNCTION monitoring_route_providers(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_route_providers(text, text) TO monitoring_reader, monitoring_writer;
