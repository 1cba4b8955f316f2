-- pgalert 0001: alerts, routing, the delivery outbox, acknowledge/resolve, roles.
--
-- Public interface: objects named monitoring_*. Objects named _monitoring_* are internal and may change in
-- any release. Applied by `pgalert migrate` (one transaction, checksum recorded) or by
-- `psql -1 -v ON_ERROR_STOP=1 -f` in file order.

CREATE TABLE IF NOT EXISTS _monitoring_migrations (
    version text PRIMARY KEY,
    name text NOT NULL,
    checksum text,
    applied_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE _monitoring_migrations IS
'Internal: one row per applied migration; checksum is NULL until `pgalert migrate` adopts a psql-applied file.';

-- One row identifying this installation, so provider dedup keys from two databases never collide.
CREATE TABLE _monitoring_installation (
    singleton boolean PRIMARY KEY DEFAULT TRUE CONSTRAINT only_one_installation CHECK (singleton),
    installation_id uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO _monitoring_installation DEFAULT VALUES;

------------------------------------------------------------------------------------------------------------
-- Roles (cluster-wide, so created only when missing; two databases migrating at once may race)
------------------------------------------------------------------------------------------------------------
DO $roles$
DECLARE
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY[
        'monitoring_reader', 'monitoring_writer', 'monitoring_dispatcher', 'monitoring_admin'
    ] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = v_role) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database's migration created it a moment ago
            END;
        END IF;
    END LOOP;
    -- an admin can do what readers and writers do
    EXECUTE 'GRANT monitoring_reader, monitoring_writer TO monitoring_admin';
END
$roles$;

------------------------------------------------------------------------------------------------------------
-- Providers and routing
------------------------------------------------------------------------------------------------------------
CREATE TABLE monitoring_providers (
    provider text PRIMARY KEY CONSTRAINT provider_name_is_simple CHECK (provider ~ '^[a-z][a-z0-9_]{0,30}$'),
    actions text[] NOT NULL
    CONSTRAINT actions_are_known CHECK (actions <@ ARRAY['trigger', 'acknowledge', 'resolve', 'notify']),
    is_pager boolean NOT NULL DEFAULT FALSE,
    description text NOT NULL DEFAULT ''
);
COMMENT ON TABLE monitoring_providers IS
'Where alerts can be delivered. actions: what the provider can be told (trigger, acknowledge, resolve, notify);
is_pager: it wakes a person up, so a critical alert that reached no pager is raised again elsewhere.
Configuration and secrets live in the dispatcher''s environment, never here.';

INSERT INTO monitoring_providers (provider, actions, is_pager, description) VALUES
('pagerduty', ARRAY['trigger', 'acknowledge', 'resolve'], TRUE, 'PagerDuty Events API v2'),
('opsgenie', ARRAY['trigger', 'acknowledge', 'resolve'], TRUE, 'Opsgenie Alert API (ends 2027-04-05)'),
('slack', ARRAY['trigger', 'acknowledge', 'resolve', 'notify'], FALSE, 'Slack incoming webhook'),
('sentry', ARRAY['trigger'], FALSE, 'Sentry envelope endpoint'),
('webhook', ARRAY['trigger', 'acknowledge', 'resolve', 'notify'], FALSE, 'HMAC-signed JSON webhook');

CREATE TABLE monitoring_routes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_type text,
    severity text CONSTRAINT route_severity_is_known CHECK (severity IN ('critical', 'warning', 'info')),
    provider text NOT NULL REFERENCES monitoring_providers (provider),
    enabled boolean NOT NULL DEFAULT TRUE
);
CREATE UNIQUE INDEX one_route_per_type_severity_provider
ON monitoring_routes (coalesce(alert_type, ''), coalesce(severity, ''), provider);
COMMENT ON TABLE monitoring_routes IS
'Which providers an alert goes to. A row with alert_type NULL is a default for its severity; rows naming an
alert_type replace the defaults for that type (and severity, or every severity when severity is NULL).
A disabled type-specific row therefore silences that type for that provider set.';
COMMENT ON COLUMN monitoring_routes.severity IS
'critical (P0), warning (P1), info (P2); NULL on a type-specific route means every severity.';

INSERT INTO monitoring_routes (severity, provider) VALUES
('critical', 'pagerduty'), ('critical', 'slack'), ('critical', 'sentry'),
('warning', 'opsgenie'), ('warning', 'slack'), ('warning', 'sentry'),
('info', 'slack');
-- A page that could not be delivered is raised through everything else that might still work.
INSERT INTO monitoring_routes (alert_type, severity, provider) VALUES
('pgalert_delivery_failure', NULL, 'opsgenie'),
('pgalert_delivery_failure', NULL, 'slack'),
('pgalert_delivery_failure', NULL, 'sentry'),
('pgalert_delivery_failure', NULL, 'webhook');

-- No SET clause: a plain STABLE SQL function is inlined into the INSERT trigger's statement.
CREATE FUNCTION monitoring_route_providers(p_alert_type text, p_severity text)
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

------------------------------------------------------------------------------------------------------------
-- Alerts
------------------------------------------------------------------------------------------------------------
CREATE TABLE monitoring_alerts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_type text NOT NULL,
    severity text NOT NULL CONSTRAINT severity_is_known CHECK (severity IN ('critical', 'warning', 'info')),
    priority text GENERATED ALWAYS AS (
        CASE severity WHEN 'critical' THEN 'P0' WHEN 'warning' THEN 'P1' ELSE 'P2' END
    ) STORED,
    title text NOT NULL CONSTRAINT title_is_not_blank CHECK (btrim(title) <> ''),
    message text NOT NULL DEFAULT '',
    source text NOT NULL DEFAULT '',
    dedup_key text NOT NULL,
    details jsonb NOT NULL DEFAULT '{}',
    status text NOT NULL DEFAULT 'open'
    CONSTRAINT status_is_known CHECK (status IN ('open', 'acknowledged', 'resolved')),
    occurred_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    occurrence_count integer NOT NULL DEFAULT 1,
    acknowledged_at timestamptz,
    acknowledged_by text,
    acknowledge_note text,
    resolved_at timestamptz,
    resolved_by text,
    resolve_note text,
    false_positive boolean NOT NULL DEFAULT FALSE,
    CONSTRAINT alert_type_is_not_blank CHECK (btrim(alert_type) <> ''),
    CONSTRAINT occurred_not_after_created CHECK (occurred_at <= created_at),
    CONSTRAINT acknowledged_after_created CHECK (acknowledged_at >= created_at),
    CONSTRAINT resolved_after_created CHECK (resolved_at >= created_at),
    CONSTRAINT acknowledged_has_time CHECK ((status = 'acknowledged') <= (acknowledged_at IS NOT NULL)),
    CONSTRAINT resolved_has_time CHECK ((status = 'resolved') = (resolved_at IS NOT NULL)),
    CONSTRAINT false_positive_only_when_resolved CHECK (NOT false_positive OR status = 'resolved')
);
-- The invariant behind deduplication: at most one unresolved alert per key.
CREATE UNIQUE INDEX one_open_alert_per_dedup_key ON monitoring_alerts (dedup_key) WHERE status <> 'resolved';
CREATE INDEX monitoring_alerts_created_at ON monitoring_alerts (created_at);

COMMENT ON TABLE monitoring_alerts IS
'Alerts. Apps INSERT (alert_type, severity, title, message[, source, dedup_key, details, occurred_at]).
While an alert with the same dedup_key is unresolved a new INSERT pages nobody: it bumps occurrence_count,
last_seen_at and keeps the latest title, message and details on the open alert (the INSERT reports 0 rows).';
COMMENT ON COLUMN monitoring_alerts.severity IS
'critical = P0 (pages: PagerDuty), warning = P1 (Opsgenie), info = P2 (Slack only). P0/P1/P2 are accepted on INSERT.';
COMMENT ON COLUMN monitoring_alerts.dedup_key IS
'Alerts with the same key while one is unresolved are one alert. Default: alert_type, or alert_type:source.';
COMMENT ON COLUMN monitoring_alerts.status IS
'open: nobody has acknowledged it; acknowledged: someone is on it; resolved: over (a new INSERT opens a new alert).';
COMMENT ON COLUMN monitoring_alerts.occurred_at IS 'When the problem started (first evidence); MTTD counts from here.';
COMMENT ON COLUMN monitoring_alerts.created_at IS 'When the alert was detected (the row was written).';
COMMENT ON COLUMN monitoring_alerts.false_positive IS 'Set on resolve when the alert should not have fired.';

CREATE FUNCTION _monitoring_normalize_severity(p_severity text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    CASE lower(btrim(p_severity))
        WHEN 'critical', 'p0' THEN RETURN 'critical';
        WHEN 'warning', 'p1' THEN RETURN 'warning';
        WHEN 'info', 'p2' THEN RETURN 'info';
        ELSE
            RAISE EXCEPTION 'unknown severity %', coalesce(quote_literal(p_severity), 'NULL')
                USING ERRCODE = 'check_violation',
                      HINT = 'severity must be one of critical (P0), warning (P1), info (P2)';
    END CASE;
END
$$;

------------------------------------------------------------------------------------------------------------
-- The delivery outbox
------------------------------------------------------------------------------------------------------------
CREATE TABLE monitoring_deliveries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id bigint NOT NULL REFERENCES monitoring_alerts (id) ON DELETE CASCADE,
    provider text NOT NULL,
    action text NOT NULL CONSTRAINT action_is_known CHECK (action IN ('trigger', 'acknowledge', 'resolve', 'notify')),
    target text NOT NULL DEFAULT '',
    context jsonb NOT NULL DEFAULT '{}',
    status text NOT NULL DEFAULT 'pending'
    CONSTRAINT delivery_status_is_known CHECK (status IN ('pending', 'sending', 'succeeded', 'failed', 'skipped')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_by text,
    last_http_status integer,
    last_error text,
    provider_reference text,
    created_at timestamptz NOT NULL DEFAULT now(),
    first_attempt_at timestamptz,
    completed_at timestamptz,
    CONSTRAINT one_delivery_per_alert_provider_action UNIQUE (alert_id, provider, action, target),
    CONSTRAINT completed_when_final CHECK ((status IN ('succeeded', 'failed', 'skipped')) = (completed_at IS NOT NULL))
);
CREATE INDEX monitoring_deliveries_due ON monitoring_deliveries (next_attempt_at, id)
WHERE status IN ('pending', 'sending');

COMMENT ON TABLE monitoring_deliveries IS
'The outbox: one row per (alert, provider, action, target), written in the transaction that made it necessary.
Dispatchers claim due rows with FOR UPDATE SKIP LOCKED; NOTIFY monitoring_deliveries is only a wake-up.';
COMMENT ON COLUMN monitoring_deliveries.status IS
'pending: waiting for next_attempt_at; sending: claimed, and next_attempt_at is the lease expiry after which
another dispatcher takes it over; succeeded; failed: final error or attempts exhausted (see last_error);
skipped: the provider is not configured on the dispatcher (reason in last_error).';
COMMENT ON COLUMN monitoring_deliveries.target IS 'Who a notify (escalation) is addressed to; empty otherwise.';
COMMENT ON COLUMN monitoring_deliveries.context IS 'Action facts, e.g. who acknowledged and their note.';
COMMENT ON COLUMN monitoring_deliveries.provider_reference IS
'What the provider calls it: PagerDuty dedup_key, Opsgenie requestId, Sentry event id.';

CREATE TABLE monitoring_delivery_attempts (
    delivery_id bigint NOT NULL REFERENCES monitoring_deliveries (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    dispatcher text NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    outcome text NOT NULL CONSTRAINT attempt_outcome_is_known CHECK (outcome IN ('succeeded', 'retry', 'failed', 'skipped')),
    http_status integer,
    error text,
    PRIMARY KEY (delivery_id, attempt)
);
COMMENT ON TABLE monitoring_delivery_attempts IS
'Every attempt to send a delivery, with its HTTP status and error. outcome retry means it will be tried again.';

-- Enqueue one action for an alert. trigger goes by the routes; follow-ups go to the providers that were told
-- about the alert and understand the action.
CREATE FUNCTION _monitoring_enqueue(p_alert_id bigint, p_action text, p_context jsonb DEFAULT '{}')
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.monitoring_deliveries (alert_id, provider, action, context)
    SELECT p_alert_id, p.provider, p_action, p_context
    FROM public.monitoring_providers AS p
    WHERE p_action = ANY (p.actions)
      AND CASE
          WHEN p_action = 'trigger' THEN p.provider IN (
              SELECT public.monitoring_route_providers(a.alert_type, a.severity)
              FROM public.monitoring_alerts AS a WHERE a.id = p_alert_id
          )
          ELSE EXISTS (
              SELECT FROM public.monitoring_deliveries AS t
              WHERE t.alert_id = p_alert_id AND t.provider = p.provider AND t.action = 'trigger'
                AND t.status <> 'skipped'
          )
      END
    ON CONFLICT ON CONSTRAINT one_delivery_per_alert_provider_action DO NOTHING
$$;

CREATE FUNCTION _monitoring_alert_before_insert()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_open public.monitoring_alerts;
    v_new_severity text;
BEGIN
    IF NEW.alert_type IS NULL OR btrim(NEW.alert_type) = '' THEN
        RAISE EXCEPTION 'alert_type is required'
            USING ERRCODE = 'not_null_violation', HINT = 'a short machine name such as payment_failure';
    END IF;
    IF NEW.title IS NULL OR btrim(NEW.title) = '' THEN
        RAISE EXCEPTION 'title is required'
            USING ERRCODE = 'not_null_violation', HINT = 'a one-line summary a person reads first';
    END IF;
    NEW.severity := public._monitoring_normalize_severity(NEW.severity);
    NEW.message := coalesce(NEW.message, '');
    NEW.source := coalesce(NEW.source, '');
    NEW.details := coalesce(NEW.details, '{}');
    NEW.dedup_key := coalesce(
        nullif(NEW.dedup_key, ''),
        NEW.alert_type || CASE WHEN NEW.source = '' THEN '' ELSE ':' || NEW.source END
    );
    -- a new alert starts open, whatever the INSERT said; the lifecycle functions move it on
    NEW.status := 'open';
    NEW.occurrence_count := 1;
    NEW.last_seen_at := NEW.created_at;
    NEW.acknowledged_at := NULL; NEW.acknowledged_by := NULL; NEW.acknowledge_note := NULL;
    NEW.resolved_at := NULL; NEW.resolved_by := NULL; NEW.resolve_note := NULL;
    NEW.false_positive := false;
    IF NEW.occurred_at > NEW.created_at THEN
        NEW.occurred_at := NEW.created_at;  -- a clock ahead of the database's cannot make MTTD negative
    END IF;

    -- Serialize writers of one key so concurrent INSERTs see each other's open alert instead of racing the
    -- unique index. Each plpgsql statement takes a fresh snapshot, so after the lock we see the winner's row.
    PERFORM pg_advisory_xact_lock(1886414689, hashtext(NEW.dedup_key));
    SELECT * INTO v_open
    FROM public.monitoring_alerts AS a
    WHERE a.dedup_key = NEW.dedup_key AND a.status <> 'resolved'
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NEW;
    END IF;
    v_new_severity := CASE
        WHEN array_position(ARRAY['info', 'warning', 'critical'], NEW.severity)
            > array_position(ARRAY['info', 'warning', 'critical'], v_open.severity)
        THEN NEW.severity ELSE v_open.severity
    END;
    UPDATE public.monitoring_alerts
    SET occurrence_count = occurrence_count + 1,
        last_seen_at = greatest(last_seen_at, NEW.created_at),
        title = NEW.title,
        message = NEW.message,
        details = details || NEW.details,
        severity = v_new_severity
    WHERE id = v_open.id;
    -- a repeat that raises the severity reaches the providers of the new severity; the others already know
    IF v_new_severity <> v_open.severity THEN
        PERFORM public._monitoring_enqueue(v_open.id, 'trigger');
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION _monitoring_alerts_after_insert()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO public.monitoring_deliveries (alert_id, provider, action)
    SELECT a.id, r.provider, 'trigger'
    FROM new_alerts AS a
    CROSS JOIN LATERAL public.monitoring_route_providers(a.alert_type, a.severity) AS r (provider)
    -- a later row of the same INSERT may have deduplicated into this one and enqueued already
    ON CONFLICT ON CONSTRAINT one_delivery_per_alert_provider_action DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER monitoring_alerts_deduplicate
BEFORE INSERT ON monitoring_alerts
FOR EACH ROW EXECUTE FUNCTION _monitoring_alert_before_insert();

CREATE TRIGGER monitoring_alerts_enqueue
AFTER INSERT ON monitoring_alerts
REFERENCING NEW TABLE AS new_alerts
FOR EACH STATEMENT EXECUTE FUNCTION _monitoring_alerts_after_insert();

CREATE FUNCTION _monitoring_deliveries_notify()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_notify('monitoring_deliveries', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER monitoring_deliveries_wake_dispatchers
AFTER INSERT ON monitoring_deliveries
FOR EACH STATEMENT EXECUTE FUNCTION _monitoring_deliveries_notify();

------------------------------------------------------------------------------------------------------------
-- Lifecycle
------------------------------------------------------------------------------------------------------------
CREATE FUNCTION monitoring_raise_alert(
    p_alert_type text,
    p_severity text,
    p_title text,
    p_message text DEFAULT '',
    p_source text DEFAULT '',
    p_dedup_key text DEFAULT NULL,
    p_details jsonb DEFAULT '{}',
    p_occurred_at timestamptz DEFAULT NULL,
    p_at timestamptz DEFAULT now()
)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id bigint;
BEGIN
    INSERT INTO public.monitoring_alerts
        (alert_type, severity, title, message, source, dedup_key, details, occurred_at, created_at)
    VALUES
        (p_alert_type, p_severity, p_title, p_message, p_source, p_dedup_key, p_details,
         coalesce(p_occurred_at, p_at), p_at)
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        SELECT a.id INTO v_id
        FROM public.monitoring_alerts AS a
        WHERE a.dedup_key = coalesce(
            nullif(p_dedup_key, ''),
            p_alert_type || CASE WHEN coalesce(p_source, '') = '' THEN '' ELSE ':' || p_source END
        )
          AND a.status <> 'resolved';
    END IF;
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION monitoring_raise_alert(text, text, text, text, text, text, jsonb, timestamptz, timestamptz) IS
'INSERT an alert and return its id, or the id of the open alert it was deduplicated into. p_at backdates
detection (imports, tests); p_occurred_at defaults to p_at.';

CREATE FUNCTION _monitoring_get_alert_for_update(p_alert_id bigint)
RETURNS monitoring_alerts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_alert public.monitoring_alerts;
BEGIN
    -- NO KEY UPDATE: inserts of deliveries that reference the alert (foreign key checks) need not wait for us
    SELECT * INTO v_alert FROM public.monitoring_alerts WHERE id = p_alert_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alert % does not exist', coalesce(p_alert_id::text, 'NULL')
            USING ERRCODE = 'no_data_found', HINT = 'pass the id of a row in monitoring_alerts';
    END IF;
    RETURN v_alert;
END
$$;

CREATE FUNCTION monitoring_acknowledge_alert(
    p_alert_id bigint,
    p_by text DEFAULT session_user,
    p_note text DEFAULT NULL,
    p_at timestamptz DEFAULT now()
)
RETURNS monitoring_alerts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_alert public.monitoring_alerts := public._monitoring_get_alert_for_update(p_alert_id);
BEGIN
    IF v_alert.status <> 'open' THEN
        RAISE NOTICE 'alert % is already %; nothing to acknowledge', p_alert_id, v_alert.status;
        RETURN v_alert;
    END IF;
    IF p_at < v_alert.created_at THEN
        RAISE EXCEPTION 'cannot acknowledge alert % at %, before it was created at %', p_alert_id, p_at, v_alert.created_at
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE public.monitoring_alerts
    SET status = 'acknowledged', acknowledged_at = p_at, acknowledged_by = p_by, acknowledge_note = p_note
    WHERE id = p_alert_id
    RETURNING * INTO v_alert;
    PERFORM public._monitoring_enqueue(p_alert_id, 'acknowledge', jsonb_build_object('by', p_by, 'note', p_note, 'at', p_at));
    RETURN v_alert;
END
$$;
COMMENT ON FUNCTION monitoring_acknowledge_alert(bigint, text, text, timestamptz) IS
'Someone is on it: status acknowledged, and the providers that were paged are told (PagerDuty acknowledge,
Opsgenie acknowledge, a Slack follow-up). Acknowledging an alert that is not open changes nothing.';

CREATE FUNCTION monitoring_resolve_alert(
    p_alert_id bigint,
    p_by text DEFAULT session_user,
    p_note text DEFAULT NULL,
    p_false_positive boolean DEFAULT FALSE,
    p_at timestamptz DEFAULT now()
)
RETURNS monitoring_alerts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_alert public.monitoring_alerts := public._monitoring_get_alert_for_update(p_alert_id);
BEGIN
    IF v_alert.status = 'resolved' THEN
        RAISE NOTICE 'alert % is already resolved', p_alert_id;
        RETURN v_alert;
    END IF;
    IF p_at < greatest(v_alert.created_at, v_alert.acknowledged_at) THEN
        RAISE EXCEPTION 'cannot resolve alert % at %, before it was created or acknowledged', p_alert_id, p_at
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE public.monitoring_alerts
    SET status = 'resolved', resolved_at = p_at, resolved_by = p_by, resolve_note = p_note,
        false_positive = coalesce(p_false_positive, false)
    WHERE id = p_alert_id
    RETURNING * INTO v_alert;
    PERFORM public._monitoring_enqueue(p_alert_id, 'resolve',
        jsonb_build_object('by', p_by, 'note', p_note, 'at', p_at, 'false_positive', coalesce(p_false_positive, false)));
    RETURN v_alert;
END
$$;
COMMENT ON FUNCTION monitoring_resolve_alert(bigint, text, text, boolean, timestamptz) IS
'It is over: status resolved (false_positive marks an alert that should not have fired), and the providers are
told (PagerDuty resolve, Opsgenie close, a Slack follow-up). The next INSERT with the same dedup_key opens a new alert.';

------------------------------------------------------------------------------------------------------------
-- Dispatcher interface
------------------------------------------------------------------------------------------------------------
CREATE FUNCTION monitoring_claim_deliveries(
    p_dispatcher text,
    p_limit integer DEFAULT 100,
    p_lease interval DEFAULT '60 seconds'
)
RETURNS TABLE (
    delivery_id bigint,
    attempt integer,
    provider text,
    action text,
    target text,
    context jsonb,
    provider_key text,
    alert jsonb
)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- a generic plan cannot know p_limit and sorts the whole queue; planning per call costs far less
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
    RETURN QUERY
    WITH due AS (
        SELECT d.id
        FROM public.monitoring_deliveries AS d
        WHERE d.status IN ('pending', 'sending')
          AND d.next_attempt_at <= now()
          -- an alert's actions reach a provider in order: no acknowledge before its trigger went out.
          -- A correlated scalar subquery stays a per-row index probe; as NOT EXISTS the planner may turn it
          -- into an anti-join over every pending row, which stale statistics after a burst make quadratic.
          AND d.id = (
              SELECT min(unfinished.id)
              FROM public.monitoring_deliveries AS unfinished
              WHERE unfinished.alert_id = d.alert_id AND unfinished.provider = d.provider
                AND unfinished.status IN ('pending', 'sending')
          )
        ORDER BY d.next_attempt_at, d.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ),
    claimed AS (
        UPDATE public.monitoring_deliveries AS d
        SET status = 'sending',
            claimed_by = p_dispatcher,
            attempts = d.attempts + 1,
            next_attempt_at = now() + p_lease,
            first_attempt_at = coalesce(d.first_attempt_at, now())
        FROM due
        WHERE d.id = due.id
        RETURNING d.*
    )
    SELECT c.id, c.attempts, c.provider, c.action, c.target, c.context,
           'pgalert-' || left(replace(i.installation_id::text, '-', ''), 8) || '-' || c.alert_id,
           to_jsonb(a)
    FROM claimed AS c
    JOIN public.monitoring_alerts AS a ON a.id = c.alert_id
    CROSS JOIN public._monitoring_installation AS i
    ORDER BY c.id;
END
$$;
COMMENT ON FUNCTION monitoring_claim_deliveries(text, integer, interval) IS
'Dispatchers only: claim up to p_limit due deliveries (SKIP LOCKED, so dispatchers share the work) for
p_lease; a claim not completed by then is taken over by another dispatcher. provider_key is the stable
per-alert key sent to providers, so a retried or taken-over send is deduplicated by the provider.';

CREATE FUNCTION monitoring_complete_deliveries(p_dispatcher text, p_results jsonb)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_recorded integer;
    v_unblocked boolean;
    v_failed_alert_ids bigint[];
    v_failed public.monitoring_alerts;
BEGIN
    WITH results AS (
        SELECT *
        FROM jsonb_to_recordset(p_results) AS r (
            delivery_id bigint, attempt integer, outcome text, http_status integer, error text,
            provider_reference text, retry_at timestamptz, started_at timestamptz, finished_at timestamptz,
            pause boolean
        )
    ),
    -- every real attempt is recorded, even one whose lease another dispatcher has since taken over
    recorded_attempts AS (
        INSERT INTO public.monitoring_delivery_attempts
            (delivery_id, attempt, dispatcher, started_at, finished_at, outcome, http_status, error)
        SELECT r.delivery_id, r.attempt, p_dispatcher, r.started_at, r.finished_at, r.outcome, r.http_status, r.error
        FROM results AS r
        WHERE r.outcome <> 'deferred'
          AND EXISTS (SELECT FROM public.monitoring_deliveries AS d WHERE d.id = r.delivery_id)
        ON CONFLICT DO NOTHING
    ),
    -- the delivery itself moves on only while the claim is still this dispatcher's
    moved AS (
        UPDATE public.monitoring_deliveries AS d
        SET status = CASE WHEN r.outcome IN ('retry', 'deferred') THEN 'pending' ELSE r.outcome END,
            attempts = d.attempts - (r.outcome = 'deferred')::integer,
            next_attempt_at = CASE
                WHEN r.outcome IN ('retry', 'deferred') THEN coalesce(r.retry_at, now()) ELSE d.next_attempt_at
            END,
            claimed_by = NULL,
            last_http_status = CASE WHEN r.outcome = 'deferred' THEN d.last_http_status ELSE r.http_status END,
            last_error = CASE WHEN r.outcome = 'deferred' THEN d.last_error ELSE r.error END,
            provider_reference = coalesce(r.provider_reference, d.provider_reference),
            completed_at = CASE WHEN r.outcome IN ('succeeded', 'failed', 'skipped') THEN r.finished_at END
        FROM results AS r
        WHERE d.id = r.delivery_id AND d.status = 'sending' AND d.claimed_by = p_dispatcher
          AND d.attempts = r.attempt
        RETURNING d.id, d.alert_id, d.status, d.action, d.provider
    )
    SELECT count(*)::integer,
           bool_or(m.status IN ('succeeded', 'failed', 'skipped') AND EXISTS (
               SELECT FROM public.monitoring_deliveries AS later
               WHERE later.alert_id = m.alert_id AND later.provider = m.provider AND later.id > m.id
                 AND later.status = 'pending'
           )),
           array_agg(DISTINCT m.alert_id) FILTER (
               WHERE m.status = 'failed' AND m.action = 'trigger'
                 AND m.provider IN (SELECT p.provider FROM public.monitoring_providers AS p WHERE p.is_pager)
           )
    INTO v_recorded, v_unblocked, v_failed_alert_ids
    FROM moved AS m;

    -- the provider said wait (429): every dispatcher holds its sends to it until then. Rare, so the results
    -- are read a second time only when one asks for it.
    IF jsonb_path_exists(p_results, '$[*] ? (@.pause == true)') THEN
        PERFORM public.monitoring_pause_provider(d.provider, max(r.retry_at))
        FROM jsonb_to_recordset(p_results) AS r (delivery_id bigint, retry_at timestamptz, pause boolean)
        JOIN public.monitoring_deliveries AS d ON d.id = r.delivery_id
        WHERE r.pause AND r.retry_at IS NOT NULL
        GROUP BY d.provider;
    END IF;

    -- a follow-up (acknowledge after trigger) waited for this one: wake every dispatcher for it
    IF v_unblocked THEN
        PERFORM pg_notify('monitoring_deliveries', '');
    END IF;

    -- A critical alert whose page failed everywhere is raised again through the channels that still work.
    FOR v_failed IN
        SELECT a.*
        FROM public.monitoring_alerts AS a
        WHERE a.id = ANY (v_failed_alert_ids)
          AND a.severity = 'critical' AND a.alert_type <> 'pgalert_delivery_failure'
          AND NOT EXISTS (
              SELECT FROM public.monitoring_deliveries AS other
              JOIN public.monitoring_providers AS p ON p.provider = other.provider AND p.is_pager
              WHERE other.alert_id = a.id AND other.action = 'trigger'
                AND other.status IN ('succeeded', 'pending', 'sending')
          )
    LOOP
        INSERT INTO public.monitoring_alerts (alert_type, severity, title, message, source, dedup_key, details)
        VALUES (
            'pgalert_delivery_failure', 'critical',
            left('No pager received: ' || v_failed.title, 500),
            'pgalert could not deliver critical alert ' || v_failed.id || ' (' || v_failed.alert_type
            || ') to any pager. See monitoring_deliveries for the errors.',
            'pgalert', 'pgalert_delivery_failure:' || v_failed.id,
            jsonb_build_object('failed_alert_id', v_failed.id, 'failed_alert_type', v_failed.alert_type,
                               'failed_title', v_failed.title)
        );
    END LOOP;
    RETURN v_recorded;
END
$$;
COMMENT ON FUNCTION monitoring_complete_deliveries(text, jsonb) IS
'Dispatchers only: record a batch of send results, a JSON array of {delivery_id, attempt, outcome, http_status,
error, provider_reference, retry_at, started_at, finished_at, pause}. outcome: succeeded | failed | skipped
(final), retry (pending again at retry_at), deferred (not sent: pacing; the attempt is given back); pause: the
provider asked every sender to wait until retry_at. Results for a claim
that is no longer this dispatcher''s are recorded as attempts but do not move the delivery.';

CREATE FUNCTION monitoring_release_deliveries(p_dispatcher text, p_delivery_ids bigint[])
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH released AS (
        UPDATE public.monitoring_deliveries
        SET status = 'pending', attempts = attempts - 1, next_attempt_at = now(), claimed_by = NULL
        WHERE id = ANY (p_delivery_ids) AND status = 'sending' AND claimed_by = p_dispatcher
        RETURNING 1
    )
    SELECT count(*)::integer FROM released
$$;
COMMENT ON FUNCTION monitoring_release_deliveries(text, bigint[]) IS
'Dispatchers only: give back claimed deliveries that were not sent (shutdown), so others take them at once.';

-- Pacing shared by every dispatcher: a generic cell rate algorithm, one row per provider.
CREATE TABLE _monitoring_pacing (
    provider text PRIMARY KEY,
    theoretical_arrival timestamptz NOT NULL DEFAULT '-infinity'
);

CREATE FUNCTION monitoring_reserve_send_slots(
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

CREATE FUNCTION monitoring_pause_provider(p_provider text, p_until timestamptz)
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

CREATE FUNCTION monitoring_next_delivery_due()
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT d.next_attempt_at
        FROM public.monitoring_deliveries AS d
        WHERE d.status IN ('pending', 'sending')
          AND d.id = (
              SELECT min(unfinished.id)
              FROM public.monitoring_deliveries AS unfinished
              WHERE unfinished.alert_id = d.alert_id AND unfinished.provider = d.provider
                AND unfinished.status IN ('pending', 'sending')
          )
        ORDER BY d.next_attempt_at
        LIMIT 1
    );
END
$$;
COMMENT ON FUNCTION monitoring_next_delivery_due() IS
'Dispatchers only: when the next claimable delivery falls due (NULL: nothing waiting), so an idle
dispatcher sleeps exactly that long.';

CREATE VIEW monitoring_delivery_queue AS
SELECT
    provider,
    count(*) FILTER (WHERE status = 'pending') AS pending,
    count(*) FILTER (WHERE status = 'sending') AS sending,
    count(*) FILTER (WHERE status = 'pending' AND next_attempt_at <= now()) AS due,
    extract(EPOCH FROM now() - min(created_at))::double precision AS oldest_age_seconds
FROM monitoring_deliveries
WHERE status IN ('pending', 'sending')
GROUP BY provider;
COMMENT ON VIEW monitoring_delivery_queue IS
'Work not yet done, per provider: pending, sending (claimed), due now, and the age of the oldest in seconds.';

------------------------------------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------------------------------------
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;

GRANT USAGE ON SCHEMA public TO monitoring_reader, monitoring_writer, monitoring_dispatcher, monitoring_admin;
GRANT SELECT ON monitoring_alerts, monitoring_deliveries, monitoring_delivery_attempts, monitoring_routes,
monitoring_providers, monitoring_delivery_queue TO monitoring_reader, monitoring_dispatcher;
GRANT INSERT (alert_type, severity, title, message, source, dedup_key, details, occurred_at, created_at),
SELECT (id) ON monitoring_alerts TO monitoring_writer;
GRANT EXECUTE ON FUNCTION monitoring_raise_alert(text, text, text, text, text, text, jsonb, timestamptz, timestamptz)
TO monitoring_writer;
GRANT EXECUTE ON FUNCTION monitoring_route_providers(text, text) TO monitoring_reader, monitoring_writer;

GRANT UPDATE, DELETE ON monitoring_alerts TO monitoring_admin;
GRANT INSERT, UPDATE, DELETE ON monitoring_routes, monitoring_providers TO monitoring_admin;
GRANT INSERT, UPDATE ON monitoring_deliveries TO monitoring_admin;
GRANT EXECUTE ON FUNCTION monitoring_acknowledge_alert(bigint, text, text, timestamptz),
monitoring_resolve_alert(bigint, text, text, boolean, timestamptz),
_monitoring_get_alert_for_update(bigint),
_monitoring_enqueue(bigint, text, jsonb) TO monitoring_admin;

GRANT UPDATE, INSERT ON monitoring_deliveries TO monitoring_dispatcher;
GRANT INSERT ON monitoring_delivery_attempts, monitoring_alerts TO monitoring_dispatcher;
GRANT SELECT, INSERT, UPDATE ON _monitoring_pacing TO monitoring_dispatcher;
GRANT SELECT ON _monitoring_installation TO monitoring_dispatcher;
GRANT EXECUTE ON FUNCTION monitoring_claim_deliveries(text, integer, interval),
monitoring_complete_deliveries(text, jsonb),
monitoring_release_deliveries(text, bigint[]),
monitoring_reserve_send_slots(text, integer, interval, integer),
monitoring_pause_provider(text, timestamptz),
monitoring_next_delivery_due() TO monitoring_dispatcher;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0001', 'core');
