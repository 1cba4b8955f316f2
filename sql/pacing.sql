-- Pacing shared by every dispatcher: a generic cell rate algorithm, one row of _monitoring_pacing per provider,
-- and pauses a provider asked for (429 Retry-After, Sentry rate limits).
--
-- Owns: _monitoring_pacing

CREATE OR REPLACE FUNCTION monitoring_reserve_send_slots(
    p_provider text,
    p_count integer,
    p_interval interval,
    p_burst integer,
    OUT granted integer,
    OUT next_free_at timestamptz
)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_tolerance interval := p_interval * greatest(p_burst - 1, 0);
    v_tat timestamptz;
BEGIN
    INSERT INTO public._monitoring_pacing (provider) VALUES (p_provider) ON CONFLICT DO NOTHING;
    SELECT pacing.theoretical_arrival INTO v_tat
    FROM public._monitoring_pacing AS pacing WHERE pacing.provider = p_provider FOR UPDATE;
    granted := 0;
    WHILE granted < p_count AND v_tat - v_tolerance <= v_now LOOP
        v_tat := greatest(v_tat, v_now) + p_interval;
        granted := granted + 1;
    END LOOP;
    UPDATE public._monitoring_pacing SET theoretical_arrival = v_tat WHERE provider = p_provider;
    next_free_at := greatest(v_now, v_tat - v_tolerance);
END
$$;
COMMENT ON FUNCTION monitoring_reserve_send_slots(text, integer, interval, integer) IS
'Dispatchers only: of p_count sends to a provider, how many may go now at one per p_interval with bursts of
p_burst (a generic cell rate algorithm shared by every dispatcher), and when the next may go. Sends not granted
are deferred to then: queued, never dropped.';
REVOKE ALL ON FUNCTION monitoring_reserve_send_slots(text, integer, interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_reserve_send_slots(text, integer, interval, integer) TO monitoring_dispatcher;

-- The claim's short form of the above, for its usual case (sql/outbox.sql): all p_count sends granted, or none
-- and the row untouched (the claim then reserves one at a time). All are granted when the last one's slot is within
-- the burst's tolerance of now; each slot is one interval after the one before, the first at the theoretical
-- arrival time or now, whichever is later. One UPDATE: the row is not locked unless it changes.
CREATE OR REPLACE FUNCTION _monitoring_reserve_every_slot(
    p_provider text,
    p_count integer,
    p_interval interval,
    p_burst integer
)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
BEGIN
    UPDATE public._monitoring_pacing AS pacing
    SET theoretical_arrival = greatest(pacing.theoretical_arrival, v_now) + p_interval * p_count
    WHERE pacing.provider = p_provider
      AND greatest(pacing.theoretical_arrival, v_now) + p_interval * (p_count - greatest(p_burst, 1)) <= v_now;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION _monitoring_reserve_every_slot(text, integer, interval, integer) IS
'Internal: reserve all p_count sends to p_provider at its pace and say true, or reserve none and say false.';
REVOKE ALL ON FUNCTION _monitoring_reserve_every_slot(text, integer, interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_reserve_every_slot(text, integer, interval, integer) TO monitoring_dispatcher;

CREATE OR REPLACE FUNCTION monitoring_pause_provider(p_provider text, p_until timestamptz)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public._monitoring_pacing AS pacing (provider, theoretical_arrival) VALUES (p_provider, p_until)
    ON CONFLICT (provider) DO UPDATE
    SET theoretical_arrival = greatest(pacing.theoretical_arrival, excluded.theoretical_arrival)
$$;
COMMENT ON FUNCTION monitoring_pause_provider(text, timestamptz) IS
'Dispatchers only: the provider said wait (429 Retry-After, Sentry rate limits): no dispatcher sends to it before p_until.';
REVOKE ALL ON FUNCTION monitoring_pause_provider(text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_pause_provider(text, timestamptz) TO monitoring_dispatcher;
