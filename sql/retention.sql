-- Retention: how long history is kept. Each owner purges its own rows; this says when.
--
-- Owns no table.

CREATE OR REPLACE FUNCTION monitoring_purge_history(p_keep interval DEFAULT '90 days', p_at timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    -- webhooks about incidents pgalert did not know (those of purged alerts go with them)
    SELECT public._monitoring_purge_unmatched_actions(p_at - p_keep);
    SELECT public._monitoring_purge_alerts(p_at - p_keep);
$$;
COMMENT ON FUNCTION monitoring_purge_history(interval, timestamptz) IS
'Delete alerts resolved more than p_keep ago, with their deliveries and attempts; returns how many alerts.
Open and acknowledged alerts are never purged.';
REVOKE ALL ON FUNCTION monitoring_purge_history(interval, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_purge_history(interval, timestamptz) TO monitoring_admin;
