-- Health probes: checks every dispatcher claims, runs, and records as events the API rules read.
--
-- Owns: monitoring_health_checks
-- (a probe's result is an event, INSERTed as an app records one.)

CREATE OR REPLACE FUNCTION monitoring_claim_health_checks(p_limit integer DEFAULT 10)
RETURNS TABLE (check_id bigint, name text, url text, method text, expected_status integer, timeout_seconds double precision)
LANGUAGE sql
-- the dispatcher holds no table rights: it takes, records and names checks through these alone
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH due AS (
        SELECT c.id FROM public.monitoring_health_checks AS c
        WHERE c.enabled AND c.next_run_at <= now()
        ORDER BY c.next_run_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE public.monitoring_health_checks AS c
    SET next_run_at = now() + c.check_interval, last_run_at = now()
    FROM due WHERE c.id = due.id
    RETURNING c.id, c.name, c.url, c.method, c.expected_status, date_part('epoch', c.timeout)
$$;
COMMENT ON FUNCTION monitoring_claim_health_checks(integer) IS
'Dispatchers only: take the due health checks and move each to its next run, so no other dispatcher runs it.';
REVOKE ALL ON FUNCTION monitoring_claim_health_checks(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_claim_health_checks(integer) TO monitoring_dispatcher;

CREATE OR REPLACE FUNCTION monitoring_record_health_check(
    p_check_id bigint, p_status integer, p_response_ms double precision, p_error text, p_at timestamptz DEFAULT now()
)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_check public.monitoring_health_checks;
BEGIN
    UPDATE public.monitoring_health_checks AS c
    SET last_status = p_status, last_response_ms = p_response_ms, last_error = p_error
    WHERE c.id = p_check_id
    RETURNING * INTO v_check;
    IF NOT FOUND THEN
        RETURN;  -- deleted while it ran
    END IF;
    IF p_response_ms IS NOT NULL AND p_error IS NULL THEN
        INSERT INTO public.monitoring_events (event_type, value, labels, occurred_at)
        VALUES ('api_response_time', p_response_ms,
                jsonb_build_object('check', v_check.name, 'status', p_status), p_at);
    END IF;
    IF p_error IS NOT NULL OR p_status IS DISTINCT FROM v_check.expected_status THEN
        INSERT INTO public.monitoring_events (event_type, value, labels, occurred_at)
        VALUES ('health_check_failure', p_response_ms,
                jsonb_build_object('check', v_check.name,
                                   'reason', coalesce(p_error, format('HTTP %s, expected %s', p_status, v_check.expected_status))),
                p_at);
    END IF;
END
$$;
COMMENT ON FUNCTION monitoring_record_health_check(bigint, integer, double precision, text, timestamptz) IS
'Dispatchers only: record one probe result as events (api_response_time, and health_check_failure when it
failed or answered an unexpected status).';
REVOKE ALL ON FUNCTION monitoring_record_health_check(bigint, integer, double precision, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_record_health_check(bigint, integer, double precision, text, timestamptz) TO monitoring_dispatcher;

CREATE OR REPLACE FUNCTION monitoring_ensure_health_check(p_name text, p_url text, p_interval interval DEFAULT '5 minutes')
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.monitoring_health_checks AS c (name, url, check_interval) VALUES (p_name, p_url, p_interval)
    ON CONFLICT (name) DO UPDATE SET url = excluded.url
$$;
COMMENT ON FUNCTION monitoring_ensure_health_check(text, text, interval) IS
'Dispatchers only: create the named check, or point it at p_url (PRODUCTION_URL makes the check production
with url env:PRODUCTION_URL).';
REVOKE ALL ON FUNCTION monitoring_ensure_health_check(text, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_ensure_health_check(text, text, interval) TO monitoring_dispatcher;
