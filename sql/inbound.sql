-- Inbound: everything `pgalert serve` may do, and nothing more.
--
-- The role monitoring_inbound holds no table rights: these functions are its whole interface. Each runs as
-- its owner (SECURITY DEFINER) with a pinned search_path and takes facts (who, when, which alert), never SQL
-- or table names. The HTTP side (signatures, tokens, payload shapes) is checked in Python before a call.
--
-- Rules that hold for every source:
-- - an action is recorded in monitoring_inbound_actions, with the provider's own id for the delivery
--   (receipt_id): a webhook delivered twice, or two at once, acts once;
-- - it is recorded with the responder's time (occurred_at), bounded by the alert's own times and by now;
-- - it changes the alert through the same lifecycle functions as SQL does (escalation stops, SLA rows
--   follow), and the provider it came from is not told again (via, see _monitoring_enqueue).
--
-- Owns: monitoring_inbound_actions, monitoring_api_clients, _monitoring_alert_references

CREATE OR REPLACE FUNCTION monitoring_create_api_client(p_name text, p_token_sha256 bytea)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id bigint;
BEGIN
    IF EXISTS (SELECT FROM public.monitoring_api_clients AS c WHERE c.name = p_name) THEN
        RAISE EXCEPTION 'an API client named % exists already', p_name
            USING ERRCODE = 'unique_violation', HINT = 'revoke it first, or choose another name';
    END IF;
    INSERT INTO public.monitoring_api_clients (name, token_sha256, created_by)
    VALUES (p_name, p_token_sha256, session_user)
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION monitoring_create_api_client(text, bytea) IS
'Admins: let a client post alerts to `pgalert serve` with the bearer token whose SHA-256 is given (the token
itself never reaches the database). `pgalert api-client create NAME` makes a token and calls this.';
REVOKE ALL ON FUNCTION monitoring_create_api_client(text, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_create_api_client(text, bytea) TO monitoring_admin;

CREATE OR REPLACE FUNCTION monitoring_revoke_api_client(p_name text)
RETURNS boolean
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    -- the row stays, for history, and so its name keeps naming the alerts it raised
    WITH revoked AS (
        UPDATE public.monitoring_api_clients SET revoked_at = now()
        WHERE name = p_name AND revoked_at IS NULL
        RETURNING 1
    )
    SELECT EXISTS (SELECT FROM revoked)
$$;
COMMENT ON FUNCTION monitoring_revoke_api_client(text) IS
'Admins: the client''s token stops working at once; false when no active client has that name.';
REVOKE ALL ON FUNCTION monitoring_revoke_api_client(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_revoke_api_client(text) TO monitoring_admin;

CREATE OR REPLACE FUNCTION monitoring_inbound_client(p_token_sha256 bytea)
RETURNS text
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.name FROM public.monitoring_api_clients AS c
    WHERE c.token_sha256 = p_token_sha256 AND c.revoked_at IS NULL
$$;
COMMENT ON FUNCTION monitoring_inbound_client(bytea) IS
'pgalert serve: the name of the active API client whose token has this SHA-256, or NULL.';
REVOKE ALL ON FUNCTION monitoring_inbound_client(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_inbound_client(bytea) TO monitoring_inbound;

-- Which alert a provider means. The key pgalert sent (PagerDuty dedup_key, Opsgenie alias, the value of a
-- Slack button) names this installation and the alert id; a key of another installation names nothing.
-- A provider's own id for the alert (a PagerDuty incident id) is remembered once known, so it is looked up
-- at the provider once per incident.
-- A provider's name as serve passes it: never one of the references' own kinds (raised_by:<client> records which API
-- client raised an alert, the right to resolve it), which a caller naming its via could otherwise write.
CREATE OR REPLACE FUNCTION _monitoring_provider_via(p_via text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_via IS NULL OR p_via !~ '^[a-z][a-z0-9_]{0,30}$' THEN
        RAISE EXCEPTION 'via % is not a provider name', coalesce(quote_literal(p_via), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN p_via;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_provider_via(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION monitoring_inbound_find_alert(p_via text, p_provider_key text, p_reference text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_alert_id bigint;
BEGIN
    PERFORM public._monitoring_provider_via(p_via);
    IF p_provider_key ~ '^pgalert-[0-9a-f]{8}-[0-9]{1,18}$' THEN
        SELECT a.id INTO v_alert_id
        FROM public.monitoring_alerts AS a
        CROSS JOIN public._monitoring_installation AS i
        WHERE split_part(p_provider_key, '-', 2) = left(replace(i.installation_id::text, '-', ''), 8)
          AND a.id = split_part(p_provider_key, '-', 3)::bigint;
    END IF;
    IF v_alert_id IS NULL AND p_reference IS NOT NULL THEN
        SELECT r.alert_id INTO v_alert_id
        FROM public._monitoring_alert_references AS r
        WHERE r.via = p_via AND r.reference = p_reference;
    ELSIF v_alert_id IS NOT NULL AND p_reference IS NOT NULL THEN
        INSERT INTO public._monitoring_alert_references (via, reference, alert_id)
        VALUES (p_via, p_reference, v_alert_id)
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN v_alert_id;
END
$$;
COMMENT ON FUNCTION monitoring_inbound_find_alert(text, text, text) IS
'pgalert serve: the alert a provider means, by the key pgalert gave it (pgalert-<installation>-<id>) or by the
provider''s own reference for it (remembered whenever both are known); NULL when it is not one of ours.';
REVOKE ALL ON FUNCTION monitoring_inbound_find_alert(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_inbound_find_alert(text, text, text) TO monitoring_inbound;

-- An action from outside recorded under its receipt (the sender's id for the request): the new row's id, or NULL
-- when that receipt was recorded before, so a request delivered twice, or two at once, acts once.
CREATE OR REPLACE FUNCTION _monitoring_inbound_receipt(
    p_via text, p_receipt_id text, p_action text, p_actor text, p_at timestamptz
)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.monitoring_inbound_actions AS ia (via, receipt_id, alert_id, action, actor, occurred_at)
    VALUES (p_via, left(p_receipt_id, 200), NULL, p_action, p_actor, p_at)
    ON CONFLICT ON CONSTRAINT one_action_per_receipt DO NOTHING
    RETURNING ia.id
$$;
REVOKE ALL ON FUNCTION _monitoring_inbound_receipt(text, text, text, text, timestamptz) FROM PUBLIC;

-- What a receipt recorded before did: the answer to its repeat.
CREATE OR REPLACE FUNCTION _monitoring_inbound_repeat(p_via text, p_receipt_id text)
RETURNS TABLE (outcome text, alert_id bigint, alert_status text, actor text)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'duplicate'::text, ia.alert_id, a.status, ia.actor
    FROM public.monitoring_inbound_actions AS ia
    LEFT JOIN public.monitoring_alerts AS a ON a.id = ia.alert_id
    WHERE ia.via = p_via AND ia.receipt_id = left(p_receipt_id, 200)
$$;
REVOKE ALL ON FUNCTION _monitoring_inbound_repeat(text, text) FROM PUBLIC;

-- What a responder's action does to an alert, from any source outside (a provider, a person's phone): the outcome
-- (acknowledged, resolved, reopened, superseded, already_<status>), after acting through the lifecycle with p_via.
-- p_at is the responder's time; one before the alert existed cannot be theirs: it is the time pgalert heard of it
-- (never pulled to created_at, which would make MTTA or MTTR zero).
CREATE OR REPLACE FUNCTION _monitoring_inbound_apply(
    p_alert_id bigint, p_action text, p_actor text, p_at timestamptz, p_note text, p_via text
)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_alert public.monitoring_alerts := public._monitoring_get_alert_for_update(p_alert_id);
    v_at timestamptz := CASE WHEN p_at < v_alert.created_at THEN now() ELSE p_at END;
    v_outcome text;
BEGIN
    v_outcome := CASE
        WHEN p_action = 'acknowledge' AND v_alert.status = 'open' THEN 'acknowledged'
        WHEN p_action = 'resolve' AND v_alert.status <> 'resolved' THEN 'resolved'
        WHEN p_action = 'unacknowledge' AND v_alert.status = 'acknowledged' THEN 'reopened'
        WHEN p_action = 'reopen' AND v_alert.status = 'resolved' AND EXISTS (
            SELECT FROM public.monitoring_alerts AS other
            WHERE other.dedup_key = v_alert.dedup_key AND other.status <> 'resolved'
        ) THEN 'superseded'  -- a newer alert of the same key is open: that one is the live incident
        WHEN p_action = 'reopen' AND v_alert.status = 'resolved' THEN 'reopened'
        ELSE 'already_' || v_alert.status
    END;
    IF v_outcome = 'acknowledged' THEN
        PERFORM public._monitoring_acknowledge(p_alert_id, p_actor, p_note, greatest(v_at, v_alert.created_at), p_via);
    ELSIF v_outcome = 'resolved' THEN
        PERFORM public._monitoring_resolve(p_alert_id, p_actor, p_note, FALSE,
                                           greatest(v_at, v_alert.created_at, v_alert.acknowledged_at), p_via);
    ELSIF v_outcome = 'reopened' THEN
        PERFORM public._monitoring_reopen(p_alert_id, p_actor, v_at, p_via);
    END IF;
    RETURN v_outcome;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_inbound_apply(bigint, text, text, timestamptz, text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION monitoring_inbound_act(
    p_via text,
    p_receipt_id text,
    p_alert_id bigint,
    p_action text,
    p_actor text,
    p_at timestamptz,
    p_note text DEFAULT NULL,
    p_slack_member_id text DEFAULT NULL
)
RETURNS TABLE (outcome text, alert_id bigint, alert_status text, actor text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_action_id bigint;
    v_alert public.monitoring_alerts;
    v_actor text;
    v_at timestamptz := least(coalesce(p_at, now()), now());  -- a provider's clock ahead of ours
    v_outcome text;
BEGIN
    PERFORM public._monitoring_provider_via(p_via);
    -- a person pgalert knows by their Slack member id is named as in monitoring_people; anyone else is
    -- recorded with their Slack id beside the name Slack gave, never refused
    v_actor := coalesce(
        (SELECT pp.name FROM public.monitoring_people AS pp WHERE pp.slack_member_id = p_slack_member_id),
        nullif(btrim(left(p_actor, 200)), '')
            || CASE WHEN p_slack_member_id IS NOT NULL THEN ' (slack ' || left(p_slack_member_id, 40) || ')' ELSE '' END,
        CASE WHEN p_slack_member_id IS NOT NULL THEN 'slack user ' || left(p_slack_member_id, 40) END,
        p_via
    );
    v_action_id := public._monitoring_inbound_receipt(p_via, p_receipt_id, p_action, v_actor, p_at);
    IF v_action_id IS NULL THEN  -- a repeat of a request already recorded: what it did then
        RETURN QUERY SELECT * FROM public._monitoring_inbound_repeat(p_via, p_receipt_id);
        RETURN;
    END IF;

    IF NOT EXISTS (SELECT FROM public.monitoring_alerts AS a WHERE a.id = p_alert_id) THEN
        v_outcome := 'unknown_alert';
    ELSIF NOT EXISTS (
        -- a provider acts only on what it was sent: a channel of its kind got the alert's trigger (or a page)
        SELECT FROM public.monitoring_deliveries AS d
        JOIN public.monitoring_providers AS p ON p.provider = d.provider
        WHERE d.alert_id = p_alert_id AND p.kind = p_via AND d.action IN ('trigger', 'notify')
          AND d.status IN ('succeeded', 'sending')
    ) THEN
        v_outcome := 'not_sent_there';
    ELSE
        v_outcome := public._monitoring_inbound_apply(p_alert_id, p_action, v_actor, v_at, p_note, p_via);
        SELECT * INTO v_alert FROM public.monitoring_alerts AS a WHERE a.id = p_alert_id;
    END IF;
    UPDATE public.monitoring_inbound_actions AS ia SET outcome = v_outcome, alert_id = v_alert.id
    WHERE ia.id = v_action_id;
    RETURN QUERY SELECT v_outcome, v_alert.id, v_alert.status, v_actor;
END
$$;
COMMENT ON FUNCTION monitoring_inbound_act(text, text, bigint, text, text, timestamptz, text, text) IS
'pgalert serve: a responder acted at provider p_via (acknowledge, resolve, unacknowledge: back to open, reopen:
a resolved alert is open again). Recorded once per p_receipt_id, with p_at (the provider''s time) as the
acknowledged or resolved time (a time before the alert existed is replaced by now); p_slack_member_id names the
person through monitoring_people. A provider acts only on alerts that a channel of its kind was sent. outcome:
acknowledged, resolved, reopened, superseded, already_<status>, unknown_alert, not_sent_there or duplicate.';
REVOKE ALL ON FUNCTION monitoring_inbound_act(text, text, bigint, text, text, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_inbound_act(text, text, bigint, text, text, timestamptz, text, text)
TO monitoring_inbound;

-- Alerts raised or resolved over HTTP (the generic API, Alertmanager and Grafana), a batch per call.
--
-- - firing goes through the same INSERT as an app's, so deduplication, routing and escalation are the same;
-- - an element with an instance (Alertmanager: fingerprint and startsAt) is remembered: a repeat of a firing
--   alert changes nothing (Alertmanager re-sends every repeat_interval), and one already resolved in pgalert
--   or at a provider is not opened again by a late repeat;
-- - resolved closes the alert of that instance, or the open alert of the dedup_key, but only one that this
--   client raised: one client's token cannot close another's alerts;
-- - firing with the key of an open alert that this client did not raise (an app's, another client's) only
--   counts a repeat: the raiser's title, message, details and severity stay, and no right to resolve is won;
-- - one element that is not valid is rejected with its reason, and the rest of the batch still counts;
-- - the client is named by its token's hash, checked in the same call.
CREATE OR REPLACE FUNCTION monitoring_inbound_raise(p_via text, p_token_sha256 bytea, p_alerts jsonb)
RETURNS TABLE (alert_index integer, outcome text, alert_id bigint, error text, client text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_item jsonb;
    v_index integer;
    v_instance text;
    v_dedup_key text;
    v_alert public.monitoring_alerts;
    v_alert_id bigint;
    v_foreign boolean;
    -- the token is checked here, in the same round trip as the work: a revoked token stops at once
    v_client text := public.monitoring_inbound_client(p_token_sha256);
    v_raised_by text := 'raised_by:' || v_client;
BEGIN
    PERFORM public._monitoring_provider_via(p_via);
    IF v_client IS NULL THEN
        RAISE EXCEPTION 'the token is not one of an active API client' USING ERRCODE = 'invalid_authorization_specification';
    END IF;
    client := v_client;
    IF jsonb_typeof(p_alerts) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'alerts must be a JSON array' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR v_item, v_index IN SELECT e.value, (e.ordinality - 1)::integer FROM jsonb_array_elements(p_alerts) WITH ORDINALITY AS e
    LOOP
        alert_index := v_index;
        alert_id := NULL;
        error := NULL;
        BEGIN
            v_instance := CASE WHEN v_item ->> 'instance' IS NOT NULL THEN v_client || '/' || (v_item ->> 'instance') END;
            v_dedup_key := public._monitoring_dedup_key(v_item ->> 'alert_type', v_item ->> 'source',
                                                        v_item ->> 'dedup_key');
            v_alert_id := (SELECT r.alert_id FROM public._monitoring_alert_references AS r
                           WHERE r.via = p_via AND r.reference = v_instance);
            IF v_item ->> 'status' = 'firing' THEN
                IF v_alert_id IS NOT NULL THEN
                    outcome := CASE (SELECT a.status FROM public.monitoring_alerts AS a WHERE a.id = v_alert_id)
                        WHEN 'resolved' THEN 'already_resolved' ELSE 'repeat' END;
                ELSE
                    -- the key's writers queue here as in the INSERT trigger (same lock), so the open alert seen
                    -- now is the one the INSERT merges into
                    PERFORM pg_advisory_xact_lock(1886414689, hashtext(v_dedup_key));
                    SELECT * INTO v_alert FROM public.monitoring_alerts AS a
                    WHERE a.dedup_key = v_dedup_key AND a.status <> 'resolved';
                    v_foreign := FOUND AND NOT EXISTS (
                        SELECT FROM public._monitoring_alert_references AS r
                        WHERE r.via = v_raised_by AND r.reference = v_alert.id::text);
                    -- a repeat of someone else's alert (an app's, another client's) is counted and changes nothing
                    -- else: its title, message, details and severity stay the raiser's, and it gives no right to
                    -- resolve (a dedup key is easy to guess)
                    INSERT INTO public.monitoring_alerts
                        (alert_type, severity, title, message, source, dedup_key, details, occurred_at)
                    VALUES (
                        v_item ->> 'alert_type',
                        CASE WHEN v_foreign THEN v_alert.severity ELSE v_item ->> 'severity' END,
                        CASE WHEN v_foreign THEN v_alert.title ELSE v_item ->> 'title' END,
                        CASE WHEN v_foreign THEN v_alert.message ELSE coalesce(v_item ->> 'message', '') END,
                        coalesce(v_item ->> 'source', ''), v_dedup_key,
                        CASE WHEN v_foreign THEN '{}' ELSE coalesce(v_item -> 'details', '{}') END,
                        coalesce((v_item ->> 'occurred_at')::timestamptz, now())
                    )
                    RETURNING id INTO v_alert_id;
                    outcome := CASE WHEN v_alert_id IS NULL THEN 'deduplicated' ELSE 'opened' END;
                    -- a repeat is merged into the open alert of its key (the INSERT wrote no row)
                    v_alert_id := coalesce(v_alert_id, v_alert.id);
                    IF outcome = 'opened' THEN
                        INSERT INTO public._monitoring_alert_references (via, reference, alert_id)
                        VALUES (v_raised_by, v_alert_id::text, v_alert_id);
                    END IF;
                    IF v_instance IS NOT NULL THEN
                        INSERT INTO public._monitoring_alert_references (via, reference, alert_id)
                        VALUES (p_via, v_instance, v_alert_id)
                        ON CONFLICT DO NOTHING;
                    END IF;
                END IF;
            ELSIF v_item ->> 'status' = 'resolved' THEN
                v_alert_id := coalesce(v_alert_id, (
                    SELECT a.id FROM public.monitoring_alerts AS a
                    WHERE a.dedup_key = v_dedup_key AND a.status <> 'resolved'));
                IF v_alert_id IS NULL THEN
                    outcome := 'unknown';
                ELSIF NOT EXISTS (SELECT FROM public._monitoring_alert_references AS r
                                  WHERE r.via = v_raised_by AND r.reference = v_alert_id::text) THEN
                    outcome := 'not_raised_by_client';
                    v_alert_id := NULL;
                ELSE
                    v_alert := public._monitoring_get_alert_for_update(v_alert_id);
                    IF v_alert.status = 'resolved' THEN
                        outcome := 'already_resolved';
                    ELSE
                        PERFORM public._monitoring_resolve(
                            v_alert_id, coalesce(nullif(v_item ->> 'actor', ''), v_client), v_item ->> 'note', FALSE,
                            greatest(least(coalesce((v_item ->> 'resolved_at')::timestamptz, now()), now()),
                                     v_alert.created_at, v_alert.acknowledged_at),
                            p_via);
                        outcome := 'resolved';
                    END IF;
                END IF;
            ELSE
                RAISE EXCEPTION 'status must be firing or resolved, not %', coalesce(v_item ->> 'status', 'missing')
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            alert_id := v_alert_id;
        EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
            outcome := 'rejected';
            error := SQLERRM;
        END;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION monitoring_inbound_raise(text, bytea, jsonb) IS
'pgalert serve: raise or resolve a batch of alerts through p_via (api, alertmanager) for the active API client
whose token has SHA-256 p_token_sha256 (invalid_authorization_specification when none). Each element:
{status: firing|resolved, alert_type, severity, title, message, source, dedup_key, details, occurred_at,
resolved_at, instance, actor, note}. A client resolves only what it raised, and a firing repeat of an alert it
did not raise only counts an occurrence. One row per element, with the client''s name: outcome opened,
deduplicated, repeat, resolved, already_resolved, unknown, not_raised_by_client or rejected (with error).';
REVOKE ALL ON FUNCTION monitoring_inbound_raise(text, bytea, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_inbound_raise(text, bytea, jsonb) TO monitoring_inbound;

CREATE OR REPLACE FUNCTION monitoring_inbound_ready()
RETURNS boolean
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM public._monitoring_installation)
$$;
COMMENT ON FUNCTION monitoring_inbound_ready() IS
'pgalert serve: true when the database answers and pgalert is installed in it (the /healthz probe).';
REVOKE ALL ON FUNCTION monitoring_inbound_ready() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_inbound_ready() TO monitoring_inbound;

-- Webhooks about incidents pgalert did not know, received before p_before (those about known alerts go with
-- their alert: sql/retention.sql).
CREATE OR REPLACE FUNCTION _monitoring_purge_unmatched_actions(p_before timestamptz)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    -- a STOP or START is kept: purged, its receipt would let a captured one act again
    DELETE FROM public.monitoring_inbound_actions
    WHERE alert_id IS NULL AND received_at < p_before AND action NOT IN ('stop', 'start')
$$;
REVOKE ALL ON FUNCTION _monitoring_purge_unmatched_actions(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_purge_unmatched_actions(timestamptz) TO monitoring_admin;

-- A person answered a page from their phone (sql/paging.sql): an SMS reply (p_via sms: from p_address, naming
-- p_alert_id or not), a keypress in a call (voice: p_delivery_id is the call's delivery, p_address the number
-- called) or the Acknowledge button of a push (push: p_delivery_id, from a signed, single-use URL). It acts only
-- when the number or topic is a verified, enabled method of a person paged for that alert, as that person, via
-- sms, voice or push; otherwise it changes nothing and is recorded (unknown_sender; ambiguous: a reply naming no
-- alert while two pages run). Once per p_receipt_id, like every inbound action.
CREATE OR REPLACE FUNCTION monitoring_inbound_contact_act(
    p_via text, p_receipt_id text, p_address text, p_delivery_id bigint, p_alert_id bigint, p_action text,
    p_at timestamptz
)
RETURNS TABLE (outcome text, alert_id bigint, alert_status text, actor text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_action_id bigint;
    v_pages bigint[];
    v_person text;
    v_actor text;
    v_alert_id bigint;
    v_outcome text;
BEGIN
    IF p_via NOT IN ('sms', 'voice', 'push') OR p_action NOT IN ('acknowledge', 'resolve') THEN
        RAISE EXCEPTION 'a person acts by sms, voice or push, to acknowledge or resolve'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_delivery_id IS NOT NULL THEN
        -- the message this answers: a page to a method of this kind (and, for a call, to this number)
        SELECT d.alert_id, pp.name INTO v_alert_id, v_person
        FROM public.monitoring_deliveries AS d
        JOIN public.monitoring_contact_methods AS m ON m.id = (d.context ->> 'contact_method_id')::bigint
        JOIN public.monitoring_people AS pp ON pp.id = m.person_id
        WHERE d.id = p_delivery_id AND starts_with(d.target, 'page:') AND d.context ? 'contact_method_id'
          AND m.kind = p_via AND m.enabled AND m.verified_at IS NOT NULL
          AND (m.address = p_address OR (p_via = 'push' AND p_address IS NULL));
    ELSE
        -- a text: the pages of the people whose verified number this is; the alert it names, or their one page
        v_pages := ARRAY(
            SELECT latest.id FROM (
                -- a person paged again for an alert has several pages of it: their latest is the one
                SELECT DISTINCT ON (pg.alert_id, pg.person_id) pg.id, pg.started_at
                FROM public.monitoring_person_pages AS pg
                JOIN public.monitoring_contact_methods AS m ON m.person_id = pg.person_id
                WHERE m.kind = p_via AND m.address = p_address AND m.enabled AND m.verified_at IS NOT NULL
                  AND m.opted_out_at IS NULL AND pg.reason <> 'test page'
                  AND CASE WHEN p_alert_id IS NULL THEN pg.finished_at IS NULL ELSE pg.alert_id = p_alert_id END
                ORDER BY pg.alert_id, pg.person_id, pg.started_at DESC, pg.id DESC
            ) AS latest
            ORDER BY latest.started_at DESC
        );
        IF cardinality(v_pages) = 1 THEN
            SELECT pg.alert_id, pp.name INTO v_alert_id, v_person
            FROM public.monitoring_person_pages AS pg
            JOIN public.monitoring_people AS pp ON pp.id = pg.person_id
            WHERE pg.id = v_pages[1];
        END IF;
    END IF;
    v_actor := coalesce(v_person, p_via || ' ' || left(coalesce(p_address, 'unknown'), 40));
    v_action_id := public._monitoring_inbound_receipt(p_via, p_receipt_id, p_action, v_actor, p_at);
    IF v_action_id IS NULL THEN  -- a repeat of a request already recorded: what it did then
        RETURN QUERY SELECT * FROM public._monitoring_inbound_repeat(p_via, p_receipt_id);
        RETURN;
    END IF;
    IF v_person IS NULL THEN
        v_outcome := CASE WHEN cardinality(v_pages) > 1 THEN 'ambiguous' ELSE 'unknown_sender' END;
    ELSE
        v_outcome := public._monitoring_inbound_apply(v_alert_id, p_action, v_person,
                                                     least(coalesce(p_at, now()), now()), NULL, p_via);
    END IF;
    UPDATE public.monitoring_inbound_actions AS ia SET outcome = v_outcome, alert_id = v_alert_id
    WHERE ia.id = v_action_id;
    RETURN QUERY SELECT v_outcome, v_alert_id, (SELECT a.status FROM public.monitoring_alerts AS a WHERE a.id = v_alert_id),
                        v_actor;
END
$$;
COMMENT ON FUNCTION monitoring_inbound_contact_act(text, text, text, bigint, bigint, text, timestamptz) IS
'pgalert serve: a paged person acknowledged or resolved from their phone (p_via sms, voice or push). It acts only
for a verified, enabled method of a person paged for that alert, as that person; else it is recorded and changes
nothing. outcome: acknowledged, resolved, already_<status>, unknown_sender, ambiguous or duplicate.';
REVOKE ALL ON FUNCTION monitoring_inbound_contact_act(text, text, text, bigint, bigint, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_inbound_contact_act(text, text, text, bigint, bigint, text, timestamptz)
TO monitoring_inbound;

-- Twilio's status callback for a message or call it was given (p_reference: its sid): undelivered, failed,
-- busy, no-answer or canceled mean the person was not reached, and their next notification rule goes at once.
-- A status for a sid the dispatcher has not recorded yet is kept and applied when it is (sql/outbox.sql).
-- Returns failed (it was a sent message, now failed), noted (any other status), or kept (no such message yet).
CREATE OR REPLACE FUNCTION monitoring_inbound_contact_status(p_reference text, p_status text, p_error_code text)
RETURNS text
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT public._monitoring_message_heard(p_reference, p_status, p_error_code, 'callback')
$$;
COMMENT ON FUNCTION monitoring_inbound_contact_status(text, text, text) IS
'pgalert serve: Twilio says what became of a message or call (p_reference, its sid); one that did not reach the
person fails, and their next notification rule goes at once; a status that comes before the dispatcher recorded
the sid is kept and applied when it is. Returns failed, noted or kept.';
REVOKE ALL ON FUNCTION monitoring_inbound_contact_status(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_inbound_contact_status(text, text, text) TO monitoring_inbound;

-- A text of STOP (p_stop) or START to the Twilio number, as carriers require pgalert to honour: that number's
-- text methods get nothing until START. Once per p_receipt_id, like every inbound action: a captured STOP sent
-- again after the person's START must not silence them again. Returns how many methods changed, or NULL for a
-- repeat. The number is not recorded as the actor: it is its person's secret.
CREATE OR REPLACE FUNCTION monitoring_inbound_contact_opt_out(p_receipt_id text, p_address text, p_stop boolean)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_action_id bigint;
    v_changed integer;
BEGIN
    IF coalesce(p_receipt_id, '') = '' THEN
        RAISE EXCEPTION 'a STOP or START is recorded under its receipt' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_action_id := public._monitoring_inbound_receipt('sms', p_receipt_id, CASE WHEN p_stop THEN 'stop' ELSE 'start' END,
                                                      NULL, NULL);
    IF v_action_id IS NULL THEN
        RETURN NULL;
    END IF;
    v_changed := public._monitoring_contact_opt_out(p_address, p_stop);
    UPDATE public.monitoring_inbound_actions AS ia
    SET outcome = CASE WHEN p_stop THEN 'opted_out' ELSE 'opted_in' END
    WHERE ia.id = v_action_id;
    RETURN v_changed;
END
$$;
COMMENT ON FUNCTION monitoring_inbound_contact_opt_out(text, text, boolean) IS
'pgalert serve: the owner of a number texted STOP (p_stop) or START: its text methods stop or start getting
messages, once per p_receipt_id (a repeat changes nothing). Returns how many methods changed, NULL for a repeat.';
REVOKE ALL ON FUNCTION monitoring_inbound_contact_opt_out(text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_inbound_contact_opt_out(text, text, boolean) TO monitoring_inbound;
