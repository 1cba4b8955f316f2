-- The delivery outbox and the dispatcher's interface: enqueue, wake, claim, record, release.
--
-- Owns: monitoring_deliveries, monitoring_delivery_attempts, monitoring_message_statuses
--
-- NOTIFY monitoring_deliveries is only a wake-up; the rows are the truth. Dispatchers claim due rows with
-- FOR UPDATE SKIP LOCKED for a lease, send outside any transaction, and record each attempt. Every other
-- concern changes the outbox through the functions of this file: what is enqueued, held, released, deferred or
-- skipped is decided by them, and written here.

-- Enqueue one action for an alert. trigger goes by the routes; follow-ups go to the providers that were told
-- about the alert and understand the action, except the one the action came from (context.via).
-- The channels that heard of an alert: those its trigger went to, or is on its way to (neither skipped nor held).
-- Its follow-ups, its group's and flapping's renotifications and its escalation's pages go to them. One
-- definition; a SQL function without SET, so it is inlined into each statement that asks.
CREATE OR REPLACE FUNCTION _monitoring_channels_that_heard(p_alert_id bigint)
RETURNS TABLE (provider text)
LANGUAGE sql STABLE
AS $$
    SELECT DISTINCT t.provider
    FROM public.monitoring_deliveries AS t
    WHERE t.alert_id = p_alert_id AND t.action = 'trigger' AND t.status NOT IN ('skipped', 'held')
$$;
REVOKE ALL ON FUNCTION _monitoring_channels_that_heard(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_channels_that_heard(bigint) TO monitoring_admin;

CREATE OR REPLACE FUNCTION _monitoring_enqueue(p_alert_id bigint, p_action text, p_context jsonb DEFAULT '{}')
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.monitoring_deliveries (alert_id, provider, action, context, status)
    SELECT p_alert_id, p.provider, p_action, p_context,
           -- a trigger (a repeat that raised the severity) waits while the alert is held; follow-ups never do
           CASE WHEN p_action = 'trigger' AND EXISTS (
               SELECT FROM public.monitoring_notification_holds AS h WHERE h.alert_id = p_alert_id AND h.released_at IS NULL
           ) THEN 'held' ELSE 'pending' END
    FROM public.monitoring_providers AS p
    WHERE p_action = ANY (p.actions)
      AND CASE
          WHEN p_action = 'trigger' THEN p.provider IN (
              SELECT public.monitoring_route_providers(a.alert_type, a.severity)
              FROM public.monitoring_alerts AS a WHERE a.id = p_alert_id
          )
          ELSE p.provider IN (SELECT h.provider FROM public._monitoring_channels_that_heard(p_alert_id) AS h)
          -- no echo: a provider where a responder acknowledged or resolved is not told it again (any channel of
          -- its kind: serve hears PagerDuty as pagerduty, whichever service the incident was in)
          AND p.kind IS DISTINCT FROM p_context ->> 'via'
      END
    ON CONFLICT ON CONSTRAINT one_delivery_per_alert_provider_action DO NOTHING
$$;
REVOKE ALL ON FUNCTION _monitoring_enqueue(bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_enqueue(bigint, text, jsonb) TO monitoring_admin;

-- The triggers of new alerts, by their routes: held for those a silence, window or inhibition holds (p_holds:
-- whether any hold can exist), none for those that joined a group (p_grouping: whether any can have).
CREATE OR REPLACE FUNCTION _monitoring_enqueue_new_alerts(p_alerts monitoring_alerts[], p_holds boolean, p_grouping boolean)
RETURNS void
LANGUAGE plpgsql
-- This runs at every INSERT, called only by the INSERT trigger, whose SET clauses (search_path, generic plans,
-- no JIT) hold for it: a SET clause of its own costs each call a save and restore of the settings (measured with
-- the other two calls of the trigger, 6% of the single-row INSERT rate). plpgsql, not sql: a sql function that
-- is not inlined plans its body at every call.
AS $$
BEGIN
    INSERT INTO public.monitoring_deliveries (alert_id, provider, action, status)
    SELECT a.id, r.provider, 'trigger',
           CASE WHEN p_holds AND EXISTS (
               SELECT FROM public.monitoring_notification_holds AS h WHERE h.alert_id = a.id AND h.released_at IS NULL
           ) THEN 'held' ELSE 'pending' END
    FROM unnest(p_alerts) AS a
    CROSS JOIN LATERAL public.monitoring_route_providers(a.alert_type, a.severity) AS r (provider)
    WHERE a.status <> 'resolved'
      AND NOT (p_grouping AND EXISTS (SELECT FROM public.monitoring_alert_group_members AS m WHERE m.alert_id = a.id))
    -- a later row of the same INSERT may have deduplicated into this one and enqueued already
    ON CONFLICT ON CONSTRAINT one_delivery_per_alert_provider_action DO NOTHING;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_enqueue_new_alerts(monitoring_alerts[], boolean, boolean) FROM PUBLIC;

-- Escalation's pages (sql/escalation.sql), a JSON array of {alert_id, target, context}, in the order their
-- delivery ids are to read. A page goes to every channel that takes 'notify' and received the alert's trigger:
-- where the alert's route says (a team's Slack channel, not also the default one); only an alert whose route
-- reached no such channel pages on the default Slack channel, so no page is lost. (A held alert never
-- escalates: its triggers are pending again when its escalation starts.)
CREATE OR REPLACE FUNCTION _monitoring_enqueue_pages(p_pages jsonb)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.monitoring_deliveries (alert_id, provider, action, target, context)
    SELECT page.alert_id, p.provider, 'notify', page.target, page.context
    FROM (
        SELECT (e.page ->> 'alert_id')::bigint AS alert_id, e.page ->> 'target' AS target, e.page -> 'context' AS context,
               e.position
        FROM jsonb_array_elements(coalesce(p_pages, '[]')) WITH ORDINALITY AS e (page, position)
    ) AS page
    JOIN public.monitoring_providers AS p
        ON 'notify' = ANY (p.actions)
       AND (p.provider IN (SELECT h.provider FROM public._monitoring_channels_that_heard(page.alert_id) AS h)
            OR (p.provider = 'slack' AND NOT EXISTS (
                SELECT FROM public._monitoring_channels_that_heard(page.alert_id) AS h
                JOIN public.monitoring_providers AS routed ON routed.provider = h.provider
                WHERE 'notify' = ANY (routed.actions))))
    ORDER BY page.position
    ON CONFLICT ON CONSTRAINT one_delivery_per_alert_provider_action DO NOTHING
$$;
REVOKE ALL ON FUNCTION _monitoring_enqueue_pages(jsonb) FROM PUBLIC;

-- Messages to people's contact methods (sql/paging.sql), a JSON array of {alert_id, provider, target, context,
-- skip}: one notify delivery each, in the order given; one with a skip reason is recorded as skipped, with it.
-- Returns how many were queued.
CREATE OR REPLACE FUNCTION _monitoring_enqueue_messages(p_messages jsonb)
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH queued AS (
        INSERT INTO public.monitoring_deliveries (alert_id, provider, action, target, context, status, completed_at,
                                                  last_error)
        SELECT (e.message ->> 'alert_id')::bigint, e.message ->> 'provider', 'notify', e.message ->> 'target',
               e.message -> 'context',
               CASE WHEN e.message ->> 'skip' IS NULL THEN 'pending' ELSE 'skipped' END,
               CASE WHEN e.message ->> 'skip' IS NOT NULL THEN now() END,
               'not sent: ' || (e.message ->> 'skip')
        FROM jsonb_array_elements(p_messages) WITH ORDINALITY AS e (message, position)
        ORDER BY e.position
        ON CONFLICT ON CONSTRAINT one_delivery_per_alert_provider_action DO NOTHING
        RETURNING 1
    )
    SELECT count(*)::integer FROM queued
$$;
REVOKE ALL ON FUNCTION _monitoring_enqueue_messages(jsonb) FROM PUBLIC;

-- An alert's messages whose target starts with p_prefix and that were never attempted are skipped, saying why.
CREATE OR REPLACE FUNCTION _monitoring_skip_unsent_messages(p_alert_id bigint, p_prefix text, p_why text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.monitoring_deliveries
    SET status = 'skipped', completed_at = now(), last_error = 'not sent: ' || p_why
    WHERE alert_id = p_alert_id AND action = 'notify' AND status = 'pending' AND attempts = 0
      AND starts_with(target, p_prefix)
$$;
REVOKE ALL ON FUNCTION _monitoring_skip_unsent_messages(bigint, text, text) FROM PUBLIC;

-- Twilio's statuses after which nothing more will be said of a message (delivered, undelivered, failed, read) or
-- a call (completed, busy, no-answer, canceled, failed): once one is heard, the message is not polled again.
CREATE OR REPLACE FUNCTION _monitoring_message_status_is_final(p_status text)
RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
    SELECT p_status IN ('delivered', 'undelivered', 'failed', 'read', 'completed', 'busy', 'no-answer', 'canceled')
$$;
REVOKE ALL ON FUNCTION _monitoring_message_status_is_final(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_message_status_is_final(text) TO monitoring_dispatcher;

-- Messages to contact methods that their provider says did not reach the person (undelivered, failed, busy,
-- no-answer, canceled in monitoring_message_statuses), among p_references: each is failed after all, with why,
-- so the person's next rule goes at once (sql/paging.sql). Returns how many were failed.
CREATE OR REPLACE FUNCTION _monitoring_apply_message_statuses(p_references text[])
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH failed AS (
        UPDATE public.monitoring_deliveries AS d
        SET status = 'failed',
            last_error = left('not reached: Twilio says ' || s.status || coalesce(' (error ' || s.error_code || ')', ''),
                              300)
        FROM public.monitoring_message_statuses AS s
        WHERE s.provider_reference = ANY (p_references)
          AND s.status IN ('undelivered', 'failed', 'busy', 'no-answer', 'canceled')
          AND d.provider_reference = s.provider_reference AND d.context ? 'contact_method_id'
          AND d.status = 'succeeded'
        RETURNING 1
    )
    SELECT count(*)::integer FROM failed
$$;
REVOKE ALL ON FUNCTION _monitoring_apply_message_statuses(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_apply_message_statuses(text[]) TO monitoring_dispatcher;

-- What the provider said of a message or call (p_reference: its sid), heard by p_via (callback or poll): kept,
-- and applied to its message. Twilio calls back within milliseconds of its 201 and never retries, so a status
-- may come before the dispatcher recorded the sid: it waits in monitoring_message_statuses, and
-- monitoring_complete_deliveries applies it. Callbacks can come out of order: a final status is never replaced
-- by one that is not. Returns failed (a sent message, now failed), noted, or kept (no message has that sid yet).
CREATE OR REPLACE FUNCTION _monitoring_message_heard(p_reference text, p_status text, p_error_code text, p_via text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO public.monitoring_message_statuses AS s (provider_reference, status, error_code, heard_via)
    VALUES (p_reference, p_status, p_error_code, p_via)
    ON CONFLICT (provider_reference) DO UPDATE
    SET status = excluded.status, error_code = excluded.error_code, heard_via = excluded.heard_via, heard_at = now()
    WHERE public._monitoring_message_status_is_final(excluded.status)
       OR NOT public._monitoring_message_status_is_final(s.status);
    IF NOT EXISTS (SELECT FROM public.monitoring_deliveries AS d
                   WHERE d.provider_reference = p_reference AND d.context ? 'contact_method_id') THEN
        RETURN 'kept';
    END IF;
    RETURN CASE WHEN public._monitoring_apply_message_statuses(ARRAY[p_reference]) > 0 THEN 'failed' ELSE 'noted' END;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_message_heard(text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_message_heard(text, text, text, text) TO monitoring_dispatcher;

-- How long after it was sent a message's final status is asked of its provider when no callback brought it, how
-- often, and for how long (a carrier that never reports delivery would otherwise be asked forever).
CREATE OR REPLACE FUNCTION monitoring_messages_to_poll(p_limit integer)
RETURNS TABLE (delivery_id bigint, provider text, kind text, provider_reference text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- statuses are kept two days: long past any poll, and a sid Twilio called back about that no message ever
    -- got (another installation's, on a shared account) does not stay forever
    DELETE FROM public.monitoring_message_statuses AS s WHERE s.heard_at < now() - interval '2 days';
    RETURN QUERY
    SELECT d.id, d.provider, d.context -> 'contact' ->> 'kind', d.provider_reference
    FROM public.monitoring_deliveries AS d
    JOIN public.monitoring_providers AS p ON p.provider = d.provider AND p.kind = 'twilio'
    LEFT JOIN public.monitoring_message_statuses AS s ON s.provider_reference = d.provider_reference
    WHERE d.context ? 'contact_method_id' AND d.provider_reference IS NOT NULL
      AND d.completed_at BETWEEN now() - interval '1 hour' AND now() - interval '2 minutes'
      AND d.status = 'succeeded'
      AND (s.provider_reference IS NULL
           OR (NOT public._monitoring_message_status_is_final(s.status) AND s.heard_at < now() - interval '2 minutes'))
    ORDER BY d.completed_at
    LIMIT p_limit;
END
$$;
COMMENT ON FUNCTION monitoring_messages_to_poll(integer) IS
'Dispatchers only: texts and calls sent through a Twilio channel between 2 minutes and an hour ago whose final
status has not come (its callback was lost, or pgalert serve has no public URL), at most p_limit, each asked again
at most every 2 minutes: the dispatcher fetches each from Twilio and reports it with monitoring_message_polled.
kind is the contact method''s: sms (a Message) or voice (a Call).';
REVOKE ALL ON FUNCTION monitoring_messages_to_poll(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_messages_to_poll(integer) TO monitoring_dispatcher;

CREATE OR REPLACE FUNCTION monitoring_message_polled(p_reference text, p_status text, p_error_code text)
RETURNS text
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT public._monitoring_message_heard(p_reference, p_status, p_error_code, 'poll')
$$;
COMMENT ON FUNCTION monitoring_message_polled(text, text, text) IS
'Dispatchers only: what Twilio answered when asked about a message or call (p_reference, its sid): its status
and error code, applied as a status callback is (one that did not reach the person fails, and their next
notification rule goes at once). Returns failed, noted or kept.';
REVOKE ALL ON FUNCTION monitoring_message_polled(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_message_polled(text, text, text) TO monitoring_dispatcher;

-- A trigger once more, to the channels that heard of each alert (a group's renotification, flapping that
-- stopped); p_targets names each one, so it is a delivery of its own. Returns how many were queued.
CREATE OR REPLACE FUNCTION _monitoring_notify_again(p_alert_ids bigint[], p_targets text[])
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH enqueued AS (
        INSERT INTO public.monitoring_deliveries (alert_id, provider, action, target, status)
        SELECT again.alert_id, h.provider, 'trigger', again.target,
               -- a held alert's renotification waits for the hold to end, as its trigger would
               CASE WHEN EXISTS (SELECT FROM public.monitoring_notification_holds AS held
                                 WHERE held.alert_id = again.alert_id AND held.released_at IS NULL)
                    THEN 'held' ELSE 'pending' END
        FROM unnest(p_alert_ids, p_targets) AS again (alert_id, target)
        CROSS JOIN LATERAL public._monitoring_channels_that_heard(again.alert_id) AS h
        ON CONFLICT ON CONSTRAINT one_delivery_per_alert_provider_action DO NOTHING
        RETURNING 1
    )
    SELECT count(*)::integer FROM enqueued
$$;
REVOKE ALL ON FUNCTION _monitoring_notify_again(bigint[], text[]) FROM PUBLIC;

-- An alert's trigger not yet attempted is due at p_at (a group's first notification, group_wait after it opened);
-- p_never_sooner: only those due before it wait (a group raised later keeps what pacing deferred further).
CREATE OR REPLACE FUNCTION _monitoring_defer_trigger(p_alert_id bigint, p_at timestamptz, p_never_sooner boolean)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.monitoring_deliveries
    SET next_attempt_at = p_at
    WHERE alert_id = p_alert_id AND action = 'trigger' AND status = 'pending' AND attempts = 0
      AND (NOT p_never_sooner OR next_attempt_at < p_at)
$$;
REVOKE ALL ON FUNCTION _monitoring_defer_trigger(bigint, timestamptz, boolean) FROM PUBLIC;

-- Nobody is to be paged for the alert any more: its held triggers (p_which 'held') or its trigger that is
-- pending and was never attempted (p_which 'unsent') are skipped, saying why.
CREATE OR REPLACE FUNCTION _monitoring_skip_triggers(p_alert_id bigint, p_which text, p_why text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.monitoring_deliveries
    SET status = 'skipped', completed_at = now(), last_error = 'not sent: ' || p_why
    WHERE alert_id = p_alert_id
      AND CASE p_which WHEN 'held' THEN status = 'held'
                       ELSE action = 'trigger' AND status = 'pending' AND attempts = 0 END
$$;
REVOKE ALL ON FUNCTION _monitoring_skip_triggers(bigint, text, text) FROM PUBLIC;

-- The held triggers of open alerts that nothing holds any more go out now; returns those alerts' ids.
CREATE OR REPLACE FUNCTION _monitoring_release_held_triggers()
RETURNS bigint[]
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH released AS (
        UPDATE public.monitoring_deliveries AS d
        SET status = 'pending', next_attempt_at = now()
        FROM public.monitoring_alerts AS a
        WHERE d.status = 'held' AND a.id = d.alert_id AND a.status = 'open'
          AND NOT EXISTS (SELECT FROM public.monitoring_notification_holds AS h
                          WHERE h.alert_id = d.alert_id AND h.released_at IS NULL)
        RETURNING d.alert_id
    )
    SELECT array_agg(DISTINCT r.alert_id) FROM released AS r
$$;
REVOKE ALL ON FUNCTION _monitoring_release_held_triggers() FROM PUBLIC;

-- Alerts a silence or window came to hold while they were open: what is queued for them and not yet attempted (a
-- trigger, a renotification, a page to a person) waits too; follow-ups (acknowledge, resolve) never do.
CREATE OR REPLACE FUNCTION _monitoring_hold_unsent(p_alert_ids bigint[])
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.monitoring_deliveries
    SET status = 'held'
    WHERE alert_id = ANY (p_alert_ids) AND status = 'pending' AND attempts = 0 AND action IN ('trigger', 'notify')
$$;
REVOKE ALL ON FUNCTION _monitoring_hold_unsent(bigint[]) FROM PUBLIC;

-- Since when the alert has been held without a break, for the holds that ended at p_at: the start of the run of
-- overlapping holds that ends then (a silence from 10:00 to 10:30 and a window from 10:20 to 11:00 held it from
-- 10:00). NULL when no hold ended at p_at. What escalations and pages to people do not count when they resume.
CREATE OR REPLACE FUNCTION _monitoring_held_since(p_alert_id bigint, p_at timestamptz)
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE held (since) AS (
        SELECT min(h.held_at) FROM public.monitoring_notification_holds AS h
        WHERE h.alert_id = p_alert_id AND h.released_at = p_at
        UNION
        SELECT h.held_at
        FROM held JOIN public.monitoring_notification_holds AS h
            ON h.alert_id = p_alert_id AND h.held_at < held.since AND h.released_at >= held.since
    )
    SELECT min(held.since) FROM held
$$;
REVOKE ALL ON FUNCTION _monitoring_held_since(bigint, timestamptz) FROM PUBLIC;

-- A reopened alert: the follow-ups already sent become history, so the next acknowledge or resolve reaches the
-- providers again; those not yet sent are dropped.
CREATE OR REPLACE FUNCTION _monitoring_archive_follow_ups(p_alert_id bigint, p_why text, p_at timestamptz)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.monitoring_deliveries
    SET status = CASE WHEN status = 'pending' THEN 'skipped' ELSE status END,
        completed_at = CASE WHEN status = 'pending' THEN now() ELSE completed_at END,
        last_error = CASE WHEN status = 'pending' THEN 'not sent: ' || p_why ELSE last_error END,
        -- the delivery's own id keeps the archived row unique when two reopens carry the same provider time
        target = 'before reopen at ' || p_at || ' #' || id
    WHERE alert_id = p_alert_id AND action IN ('acknowledge', 'resolve') AND target = ''
$$;
REVOKE ALL ON FUNCTION _monitoring_archive_follow_ups(bigint, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_archive_follow_ups(bigint, text, timestamptz) TO monitoring_admin;

CREATE OR REPLACE FUNCTION _monitoring_deliveries_notify()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_notify('monitoring_deliveries', '');
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_deliveries_notify() FROM PUBLIC;

CREATE OR REPLACE TRIGGER monitoring_deliveries_wake_dispatchers
AFTER INSERT ON monitoring_deliveries
FOR EACH STATEMENT EXECUTE FUNCTION _monitoring_deliveries_notify();
COMMENT ON TRIGGER monitoring_deliveries_wake_dispatchers ON monitoring_deliveries IS
'NOTIFY monitoring_deliveries once per statement: a wake-up for the dispatchers, never the data.';

-- What a group notification says, as of when it is sent: the dispatcher's claim lays this over the group
-- alert, so a notification held back by group_wait or pacing counts every alert that joined meanwhile.
CREATE OR REPLACE FUNCTION _monitoring_group_summary(p_group monitoring_alert_groups, p_title text)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'title', left('[' || p_group.member_count || CASE WHEN p_group.member_count = 1 THEN ' alert] ' ELSE ' alerts] ' END
                      || p_title, 1024),
        'message', concat_ws(E'\n',
            p_group.member_count || ' alerts (' || open_count.n || ' still open) grouped by '
                || CASE WHEN p_group.group_labels = '{}' THEN 'rule ' || rule.name ELSE p_group.group_labels::text END
                || '. Latest:',
            string_agg('- [' || latest.severity || '] ' || left(latest.title, 200), E'\n' ORDER BY latest.joined_at DESC, latest.id DESC),
            CASE WHEN p_group.member_count > 20 THEN
                '... and ' || (p_group.member_count - 20) || ' more: SELECT * FROM monitoring_alert_group_members WHERE group_alert_id = '
                || p_group.alert_id
            END),
        'group', jsonb_build_object(
            'rule', rule.name, 'group_by', p_group.group_labels, 'alerts', p_group.member_count,
            'open', open_count.n, 'opened_at', p_group.opened_at,
            'latest', coalesce(jsonb_agg(jsonb_build_object('id', latest.id, 'severity', latest.severity,
                                                             'title', left(latest.title, 200), 'status', latest.status)
                                         ORDER BY latest.joined_at DESC, latest.id DESC), '[]')
        )
    )
    FROM public.monitoring_group_rules AS rule
    CROSS JOIN LATERAL (
        SELECT count(*) AS n
        FROM public.monitoring_alert_group_members AS m
        JOIN public.monitoring_alerts AS a ON a.id = m.alert_id
        WHERE m.group_alert_id = p_group.alert_id AND a.status <> 'resolved'
    ) AS open_count
    LEFT JOIN LATERAL (
        SELECT a.id, a.severity, a.title, a.status, m.joined_at
        FROM public.monitoring_alert_group_members AS m
        JOIN public.monitoring_alerts AS a ON a.id = m.alert_id
        WHERE m.group_alert_id = p_group.alert_id
        ORDER BY m.joined_at DESC, m.alert_id DESC
        LIMIT 20
    ) AS latest ON TRUE
    WHERE rule.id = p_group.rule_id
    GROUP BY rule.name, open_count.n
$$;
REVOKE ALL ON FUNCTION _monitoring_group_summary(monitoring_alert_groups, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_group_summary(monitoring_alert_groups, text) TO monitoring_dispatcher;

-- An alert as a dispatcher receives it. Rows stored before the size limits (0012) may be huge: never hand one whole
-- to a dispatcher (octet_length of text reads only its header; a jsonb is measured only when it was big enough to be
-- compressed, since its stored size says nothing then). One SQL expression, so the claim's plan inlines it.
CREATE OR REPLACE FUNCTION _monitoring_alert_as_sent(p_alert monitoring_alerts)
RETURNS jsonb
LANGUAGE sql
STABLE
AS $$
    SELECT CASE
        WHEN octet_length(p_alert.message) > 81920 OR pg_column_size(p_alert.details) > 65536
          OR (pg_column_compression(p_alert.details) IS NOT NULL AND octet_length(p_alert.details::text) > 65536)
        THEN to_jsonb(p_alert) || jsonb_build_object(
            'message', left(p_alert.message, 20000),
            'details', jsonb_build_object('pgalert_truncated', 'details over 64 KiB were left out'))
        ELSE to_jsonb(p_alert)
    END
$$;
COMMENT ON FUNCTION _monitoring_alert_as_sent(monitoring_alerts) IS
'Internal: the alert as the claim hands it to a dispatcher, cut to the size limits when it was stored before them.';
REVOKE ALL ON FUNCTION _monitoring_alert_as_sent(monitoring_alerts) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_alert_as_sent(monitoring_alerts) TO monitoring_dispatcher;

-- Why a message to a person's contact method (sql/paging.sql) may not be sent now, or NULL: it is checked when it is
-- claimed, whoever wrote the row, so one an admin inserted or redirected is refused. A page goes only to an
-- enabled, verified method that was not opted out; a code only to the method being verified, while it waits. The
-- row names its method, never an address: the claim reads the address from the method (_monitoring_addressed).
CREATE OR REPLACE FUNCTION _monitoring_refusal(p_target text, p_context jsonb)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN NOT p_context ? 'contact_method_id' THEN 'a message to a person names no contact method'
        WHEN m.id IS NULL THEN format('contact method %s does not exist', p_context ->> 'contact_method_id')
        WHEN p_context ?| ARRAY['email', 'slack_member_id'] OR p_context -> 'contact' ? 'address'
            THEN 'the message names an address of its own, not its contact method''s'
        WHEN p_context -> 'contact' ->> 'kind' IS DISTINCT FROM m.kind
            THEN format('the message is not of contact method %s''s kind', m.id)
        WHEN m.opted_out_at IS NOT NULL THEN format('contact method %s opted out', m.id)
        WHEN starts_with(p_target, 'verify:') THEN CASE
            WHEN p_target <> 'verify:' || m.id THEN 'a code goes only to the contact method being verified'
            WHEN v.code IS NULL OR v.expires_at <= now() THEN format('no code is waiting for contact method %s', m.id)
        END
        WHEN m.verified_at IS NULL THEN format('contact method %s is not verified', m.id)
        WHEN NOT m.enabled THEN format('contact method %s is disabled', m.id)
    END
    FROM (SELECT) AS one
    LEFT JOIN public.monitoring_contact_methods AS m ON m.id = (p_context ->> 'contact_method_id')::bigint
    LEFT JOIN public.monitoring_contact_verifications AS v ON v.contact_method_id = m.id
$$;
REVOKE ALL ON FUNCTION _monitoring_refusal(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_refusal(text, jsonb) TO monitoring_dispatcher;

-- A message to a contact method as its dispatcher sends it: with the method's address (and the keys email and
-- slack_member_id the email and Slack channels address a person by), and a verification message with its code.
-- Only here, in the sending dispatcher's claim, are they read; the outbox keeps neither.
CREATE OR REPLACE FUNCTION _monitoring_addressed(p_target text, p_context jsonb)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p_context
           || jsonb_build_object('contact', (p_context -> 'contact') || jsonb_build_object('address', m.address))
           || CASE m.kind WHEN 'email' THEN jsonb_build_object('email', m.address)
                          WHEN 'slack' THEN jsonb_build_object('slack_member_id', m.address)
                          ELSE '{}' END
           || CASE WHEN starts_with(p_target, 'verify:') THEN jsonb_build_object(
                  'code', v.code, 'reason', 'your pgalert verification code is ' || v.code || ' (valid 15 minutes)')
              ELSE '{}' END
    FROM public.monitoring_contact_methods AS m
    LEFT JOIN public.monitoring_contact_verifications AS v ON v.contact_method_id = m.id
    WHERE m.id = (p_context ->> 'contact_method_id')::bigint
$$;
REVOKE ALL ON FUNCTION _monitoring_addressed(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_addressed(text, jsonb) TO monitoring_dispatcher;

-- An escalation's page to a person (sql/escalation.sql) as its dispatcher sends it: with the person's email (by which
-- the email channel addresses them) and phone. The page names the person by id; their email and phone are read
-- only here, as a contact method's address is.
CREATE OR REPLACE FUNCTION _monitoring_person_addressed(p_context jsonb)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- the email channel mails a page to 'email': only ever an address its person verified (a contact method of
    -- kind email, enabled, not opted out), never monitoring_people.email, which nobody confirmed; without one the
    -- page goes to the channel's own recipients. 'phone' is shown, never dialled.
    SELECT p_context || jsonb_strip_nulls(jsonb_build_object(
               'email', (SELECT m.address FROM public.monitoring_contact_methods AS m
                         WHERE m.person_id = p.id AND m.kind = 'email' AND m.enabled AND m.verified_at IS NOT NULL
                           AND m.opted_out_at IS NULL
                         ORDER BY m.id LIMIT 1),
               'phone', p.phone))
    FROM (SELECT) AS one
    LEFT JOIN public.monitoring_people AS p ON p.id = (p_context ->> 'person_id')::bigint
$$;
REVOKE ALL ON FUNCTION _monitoring_person_addressed(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_person_addressed(jsonb) TO monitoring_dispatcher;

-- Claiming and recording have plans that do not depend on the delivery queue's statistics.
--
-- The queue's statistics are stale whenever it matters: a burst of 10,000 alerts writes 40,000 deliveries
-- in seconds, and autovacuum analyzes them a minute later, if at all. With statistics taken while the
-- queue was nearly empty, the planner ran the "earlier action first" probe, min(id) over unfinished rows,
-- against the partial due index (it looked tiny) instead of the (alert_id, provider, action) index, and
-- each claim walked the whole queue: measured 30-55 ms a claim instead of 0.1 ms, a quarter of the
-- throughput, in one bench run of three.
--
-- So:
-- - the probe is a NOT EXISTS on `completed_at IS NULL`, which the due index's predicate does not imply,
--   so the only index it can use is the one that finds an alert's deliveries to a provider;
-- - the functions offer the planner no sequential, bitmap, hash or merge alternatives, so the plan is an
--   ordered walk of the due index that stops after p_limit rows, with one index probe per row;
-- - JIT is off: the disabled alternatives inflate cost estimates past jit_above_cost, and compiling took
--   150 ms of a claim that runs in under 1 ms;
-- - that plan is the same for every p_limit, so the claim no longer needs planning on every call.

-- Pacing is reserved in the claim itself (p_paces: {"channel": {"interval": seconds, "burst": n}}), so a paced
-- send costs one round trip, not a claim and then a reservation: measured, the second round trip was 0.4 ms of
-- a 1.6 ms INSERT-to-provider p50. What the pace does not allow now is not claimed: it stays pending, due at its
-- slot. Channels are reserved in name order, so two claims never wait on each other's pacing rows in a cycle.
CREATE OR REPLACE FUNCTION monitoring_claim_deliveries(
    p_dispatcher text,
    p_limit integer DEFAULT 100,
    p_lease interval DEFAULT '60 seconds',
    p_paces jsonb DEFAULT '{}'  -- dispatchers older than migration 0023 call with three arguments
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
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET jit = off
-- one plan, kept: with custom plans (PostgreSQL's default for the first calls and whenever it judges them
-- cheaper) every claim planned its statements again; measured, an empty claim took 0.95 ms, 0.44 with this
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_due bigint[];
    v_paced record;
    v_granted integer;
    v_next_free timestamptz;
    v_interval interval;
    v_providers text[];
    v_channel text;
    v_one_channel text;
    v_paced_count integer := 0;
    v_all_granted boolean := false;
    v_decorate boolean;
    v_to_people boolean;
    v_naming_people boolean;
BEGIN
    SELECT array_agg(due.id), array_agg(due.provider), bool_or(due.to_person), bool_or(due.names_person),
           -- what only groups and flapping alerts need is looked up only where there are such alerts
           EXISTS (SELECT FROM public.monitoring_alert_groups) OR EXISTS (SELECT FROM public.monitoring_flapping)
    INTO v_due, v_providers, v_to_people, v_naming_people, v_decorate
    FROM (
        SELECT d.id, d.provider, d.context ?| ARRAY['contact_method_id', 'contact'] AS to_person,
               d.context ? 'person_id' AS names_person
        FROM public.monitoring_deliveries AS d
        WHERE d.status IN ('pending', 'sending')
          AND d.next_attempt_at <= now()
          -- an alert's actions reach a provider in order: no acknowledge before its trigger went out
          AND NOT EXISTS (
              SELECT FROM public.monitoring_deliveries AS earlier
              WHERE earlier.alert_id = d.alert_id AND earlier.provider = d.provider
                AND earlier.id < d.id AND earlier.completed_at IS NULL
          )
        ORDER BY d.next_attempt_at, d.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ) AS due;
    IF v_due IS NULL THEN
        RETURN;  -- nothing due: no statement more
    END IF;
    -- a message to a person goes only to an address verified now, whoever wrote or changed its row: the others are
    -- refused here, recorded as failed (a page then hands over to the person's next rule)
    IF v_to_people THEN
        WITH refused AS (
            UPDATE public.monitoring_deliveries AS d
            SET status = 'failed', claimed_by = NULL, completed_at = now(), last_error = 'refused: ' || r.why
            FROM (
                SELECT p.id, public._monitoring_refusal(p.target, p.context) AS why
                FROM public.monitoring_deliveries AS p
                WHERE p.id = ANY(v_due) AND p.context ?| ARRAY['contact_method_id', 'contact']
            ) AS r
            WHERE d.id = r.id AND r.why IS NOT NULL
            RETURNING d.id
        )
        SELECT array_agg(due.id), array_agg(due.provider) INTO v_due, v_providers
        FROM public.monitoring_deliveries AS due
        WHERE due.id = ANY(v_due) AND due.id NOT IN (SELECT refused.id FROM refused);
        IF v_due IS NULL THEN
            RETURN;
        END IF;
    END IF;
    -- Mostly one paced channel is among the sends due and its pace allows them all: counted here, on the arrays,
    -- and reserved in one UPDATE of its row (sql/pacing.sql). The general path below, a reservation per channel
    -- and a statement per step, cost 0.1 ms of a 0.35 ms claim when it ran for every claim (measured inside the
    -- server: 335 us a claim of one paced send, 295 with both short forms, alternating runs of 400).
    IF p_paces IS NOT NULL AND p_paces <> '{}' THEN
        FOREACH v_channel IN ARRAY v_providers LOOP
            CONTINUE WHEN NOT p_paces ? v_channel;
            IF v_one_channel IS NULL THEN
                v_one_channel := v_channel;
            ELSIF v_one_channel <> v_channel THEN
                v_one_channel := '';  -- two channels or more: the general path takes them in name order
            END IF;
            v_paced_count := v_paced_count + 1;
        END LOOP;
        IF v_one_channel <> '' THEN
            v_all_granted := public._monitoring_reserve_every_slot(
                v_one_channel, v_paced_count,
                make_interval(secs => (p_paces -> v_one_channel ->> 'interval')::double precision),
                (p_paces -> v_one_channel ->> 'burst')::integer
            );
        END IF;
    END IF;
    IF v_paced_count > 0 AND NOT v_all_granted THEN
        FOR v_paced IN
            SELECT d.provider, count(*)::integer AS due_now
            FROM public.monitoring_deliveries AS d
            WHERE d.id = ANY(v_due) AND p_paces ? d.provider
            GROUP BY d.provider
            ORDER BY d.provider
        LOOP
            v_interval := make_interval(secs => (p_paces -> v_paced.provider ->> 'interval')::double precision);
            SELECT r.granted, r.next_free_at INTO v_granted, v_next_free
            FROM public.monitoring_reserve_send_slots(
                v_paced.provider, v_paced.due_now, v_interval, (p_paces -> v_paced.provider ->> 'burst')::integer
            ) AS r;
            CONTINUE WHEN v_granted >= v_paced.due_now;
            -- beyond the pace: back to pending, each at its own slot (a taken-over claim loses its old owner)
            WITH ranked AS (
                SELECT d.id, row_number() OVER (ORDER BY d.next_attempt_at, d.id) AS position
                FROM public.monitoring_deliveries AS d
                WHERE d.id = ANY(v_due) AND d.provider = v_paced.provider
            ),
            deferred AS (
                UPDATE public.monitoring_deliveries AS d
                SET status = 'pending', claimed_by = NULL,
                    next_attempt_at = v_next_free + v_interval * (ranked.position - v_granted - 1)
                FROM ranked
                WHERE d.id = ranked.id AND ranked.position > v_granted
                RETURNING d.id
            )
            SELECT ARRAY(SELECT due.id FROM unnest(v_due) AS due (id) EXCEPT SELECT deferred.id FROM deferred)
            INTO v_due;
        END LOOP;
    END IF;

    -- Without a group or a flapping alert anywhere, the claim needs neither lookup: the same rows, 25 us sooner.
    IF NOT v_decorate THEN
        RETURN QUERY
        WITH claimed AS (
            UPDATE public.monitoring_deliveries AS d
            SET status = 'sending',
                claimed_by = p_dispatcher,
                attempts = d.attempts + 1,
                next_attempt_at = now() + p_lease,
                first_attempt_at = coalesce(d.first_attempt_at, now())
            WHERE d.id = ANY(v_due)
            RETURNING d.*
        )
        SELECT c.id, c.attempts, c.provider, c.action, c.target,
               CASE WHEN v_to_people AND c.context ? 'contact_method_id'
                        THEN public._monitoring_addressed(c.target, c.context)
                    WHEN v_naming_people AND c.context ? 'person_id'
                        THEN public._monitoring_person_addressed(c.context)
                    ELSE c.context END,
               'pgalert-' || left(replace(i.installation_id::text, '-', ''), 8) || '-' || c.alert_id,
               public._monitoring_alert_as_sent(a)
        FROM claimed AS c
        JOIN public.monitoring_alerts AS a ON a.id = c.alert_id
        CROSS JOIN public._monitoring_installation AS i
        ORDER BY c.id;
        RETURN;
    END IF;
    RETURN QUERY
    WITH claimed AS (
        UPDATE public.monitoring_deliveries AS d
        SET status = 'sending',
            claimed_by = p_dispatcher,
            attempts = d.attempts + 1,
            next_attempt_at = now() + p_lease,
            first_attempt_at = coalesce(d.first_attempt_at, now())
        WHERE d.id = ANY(v_due)
        RETURNING d.*
    )
    SELECT c.id, c.attempts, c.provider, c.action, c.target,
           CASE WHEN v_to_people AND c.context ? 'contact_method_id'
                    THEN public._monitoring_addressed(c.target, c.context)
                WHEN v_naming_people AND c.context ? 'person_id'
                    THEN public._monitoring_person_addressed(c.context)
                ELSE c.context END,
           'pgalert-' || left(replace(i.installation_id::text, '-', ''), 8) || '-' || c.alert_id,
           CASE WHEN g.alert_id IS NOT NULL THEN  -- a group says what it holds as of now (above)
                   to_jsonb(a) || (
                       SELECT jsonb_build_object('title', s.summary -> 'title', 'message', s.summary -> 'message',
                                                 'details', a.details || jsonb_build_object('pgalert_group', s.summary -> 'group'))
                       FROM (SELECT public._monitoring_group_summary(g, a.title) AS summary) AS s
                   )
                WHEN f.id IS NOT NULL THEN  -- it flaps, or this says it stopped (sql/flapping.sql)
                   to_jsonb(a) || jsonb_build_object(
                       'title', left(CASE WHEN f.settled_at IS NULL THEN '[flapping] ' ELSE '[stopped flapping] ' END
                                     || a.title, 1024),
                       'details', a.details || jsonb_build_object('pgalert_flapping', jsonb_build_object(
                           'flapping', f.settled_at IS NULL, 'state_changes', f.state_changes, 'since', f.started_at,
                           'settled_at', f.settled_at)))
               ELSE public._monitoring_alert_as_sent(a)
           END
    FROM claimed AS c
    JOIN public.monitoring_alerts AS a ON a.id = c.alert_id
    LEFT JOIN public.monitoring_alert_groups AS g ON g.alert_id = c.alert_id
    LEFT JOIN LATERAL (
        SELECT e.* FROM public.monitoring_flapping AS e
        WHERE e.alert_id = c.alert_id AND (e.settled_at IS NULL OR c.target = 'stopped flapping ' || e.id)
        ORDER BY e.id DESC
        LIMIT 1
    ) AS f ON TRUE
    CROSS JOIN public._monitoring_installation AS i
    ORDER BY c.id;
END
$$;
COMMENT ON FUNCTION monitoring_claim_deliveries(text, integer, interval, jsonb) IS
'Dispatchers only: claim up to p_limit due deliveries (SKIP LOCKED, so dispatchers share the work) for
p_lease; a claim not completed by then is taken over by another dispatcher. An alert''s actions to one
provider go out in order. provider_key is the stable per-alert key sent to providers, so a retried or
taken-over send is deduplicated by the provider. p_paces ({"channel": {"interval": seconds, "burst": n}})
paces those channels in the claim, shared by every dispatcher: a delivery beyond the pace is left pending,
due at its slot.';
REVOKE ALL ON FUNCTION monitoring_claim_deliveries(text, integer, interval, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_claim_deliveries(text, integer, interval, jsonb) TO monitoring_dispatcher;

CREATE OR REPLACE FUNCTION monitoring_complete_deliveries(p_dispatcher text, p_results jsonb)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET jit = off
SET plan_cache_mode = force_generic_plan  -- as the claim: planned once per connection, not at every call
AS $$
DECLARE
    v_recorded integer;
    v_unblocked boolean;
    v_failed_alert_ids bigint[];
    v_message_references text[];
    v_failed public.monitoring_alerts;
BEGIN
    WITH results AS (
        SELECT * FROM public._monitoring_result_rows(p_results)
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
        -- claimed_by is set exactly while sending (CHECK claimed_only_while_sending); testing status here
        -- too would let the planner walk the due index instead of looking each result up by id
        WHERE d.id = r.delivery_id AND d.claimed_by = p_dispatcher AND d.attempts = r.attempt
        RETURNING d.id, d.alert_id, d.status, d.action, d.provider, d.provider_reference,
                  d.context ? 'contact_method_id' AS to_contact
    )
    SELECT count(*)::integer,
           bool_or(m.status IN ('succeeded', 'failed', 'skipped') AND EXISTS (
               SELECT FROM public.monitoring_deliveries AS later
               WHERE later.alert_id = m.alert_id AND later.provider = m.provider AND later.id > m.id
                 AND later.completed_at IS NULL AND later.status <> 'sending'  -- pending, not via the due index
           )),
           array_agg(DISTINCT m.alert_id) FILTER (
               WHERE m.status = 'failed' AND m.action = 'trigger'
                 AND m.provider IN (SELECT p.provider FROM public.monitoring_providers AS p WHERE p.is_pager)
           ),
           array_agg(m.provider_reference) FILTER (
               WHERE m.to_contact AND m.status = 'succeeded' AND m.provider_reference IS NOT NULL
           )
    INTO v_recorded, v_unblocked, v_failed_alert_ids, v_message_references
    FROM moved AS m;

    -- what Twilio said of these messages before their sids were recorded here
    IF v_message_references IS NOT NULL
       AND EXISTS (SELECT FROM public.monitoring_message_statuses AS s
                   WHERE s.provider_reference = ANY (v_message_references)) THEN
        PERFORM public._monitoring_apply_message_statuses(v_message_references);
    END IF;

    -- the provider said wait (429): every dispatcher holds its sends to it until then. Rare, so the results
    -- are read a second time only when one asks for it.
    IF jsonb_path_exists(p_results, '$[*] ? (@.pause == true)') THEN
        PERFORM public.monitoring_pause_provider(d.provider, max(r.retry_at))
        FROM public._monitoring_result_rows(p_results) AS r
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
REVOKE ALL ON FUNCTION monitoring_complete_deliveries(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_complete_deliveries(text, jsonb) TO monitoring_dispatcher;

CREATE OR REPLACE FUNCTION monitoring_release_deliveries(p_dispatcher text, p_delivery_ids bigint[])
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
REVOKE ALL ON FUNCTION monitoring_release_deliveries(text, bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_release_deliveries(text, bigint[]) TO monitoring_dispatcher;

CREATE OR REPLACE FUNCTION monitoring_next_delivery_due()
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET jit = off
AS $$
BEGIN
    RETURN (
        SELECT d.next_attempt_at
        FROM public.monitoring_deliveries AS d
        WHERE d.status IN ('pending', 'sending')
          AND NOT EXISTS (
              SELECT FROM public.monitoring_deliveries AS earlier
              WHERE earlier.alert_id = d.alert_id AND earlier.provider = d.provider
                AND earlier.id < d.id AND earlier.completed_at IS NULL
          )
        ORDER BY d.next_attempt_at, d.id
        LIMIT 1
    );
END
$$;
COMMENT ON FUNCTION monitoring_next_delivery_due() IS
'Dispatchers only: when the next claimable delivery falls due (NULL: nothing waiting), so an idle
dispatcher sleeps exactly that long.';
REVOKE ALL ON FUNCTION monitoring_next_delivery_due() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_next_delivery_due() TO monitoring_dispatcher;

CREATE OR REPLACE VIEW monitoring_delivery_queue AS
SELECT
    provider,
    count(*) FILTER (WHERE status = 'pending') AS pending,
    count(*) FILTER (WHERE status = 'sending') AS sending,
    count(*) FILTER (WHERE status = 'pending' AND next_attempt_at <= now()) AS due,
    extract(EPOCH FROM now() - min(created_at) FILTER (WHERE status <> 'held'))::double precision AS oldest_age_seconds,
    count(*) FILTER (WHERE status = 'held') AS held
FROM monitoring_deliveries
WHERE status IN ('pending', 'sending', 'held')
GROUP BY provider;
COMMENT ON VIEW monitoring_delivery_queue IS
'Work not yet done, per provider: pending, sending (claimed), due now, the age of the oldest in seconds, and
held (by a silence, maintenance window or inhibition; not counted in the age).';
GRANT SELECT ON monitoring_delivery_queue TO monitoring_reader, monitoring_dispatcher;

-- jsonb_to_recordset is estimated at 100 rows, so on a queue of a few thousand rows the planner preferred
-- one pass over the whole table to a hundred lookups by id. A batch is usually a handful of results, and
-- a lookup by id is never the wrong plan. (SET keeps this function from being inlined, and with it ROWS.)
CREATE OR REPLACE FUNCTION _monitoring_result_rows(p_results jsonb)
RETURNS TABLE (
    delivery_id bigint, attempt integer, outcome text, http_status integer, error text,
    provider_reference text, retry_at timestamptz, started_at timestamptz, finished_at timestamptz,
    pause boolean
)
LANGUAGE sql IMMUTABLE ROWS 10
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM jsonb_to_recordset(p_results) AS r (
        delivery_id bigint, attempt integer, outcome text, http_status integer, error text,
        provider_reference text, retry_at timestamptz, started_at timestamptz, finished_at timestamptz,
        pause boolean
    )
$$;
COMMENT ON FUNCTION _monitoring_result_rows(jsonb) IS
'Internal: the dispatcher''s result objects as rows, estimated as the small batch they usually are.';
REVOKE ALL ON FUNCTION _monitoring_result_rows(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_result_rows(jsonb) TO monitoring_dispatcher;

CREATE OR REPLACE FUNCTION monitoring_channel_health(p_at timestamptz DEFAULT now())
RETURNS TABLE (
    provider text, kind text, description text, is_pager boolean,
    attempts_1h bigint, succeeded_1h bigint, attempts_24h bigint, succeeded_24h bigint,
    last_error text, last_error_at timestamptz,
    pending bigint, due bigint, held bigint, oldest_pending_seconds double precision, not_before timestamptz
)
LANGUAGE sql STABLE
SECURITY DEFINER  -- the pacing state is the dispatchers'; readers see only when a channel may send again
SET search_path = pg_catalog, pg_temp
AS $$
    WITH recent AS (
        SELECT d.provider, t.outcome, t.finished_at, t.error
        FROM public.monitoring_delivery_attempts AS t
        JOIN public.monitoring_deliveries AS d ON d.id = t.delivery_id
        WHERE t.finished_at > p_at - interval '24 hours' AND t.finished_at <= p_at
    ),
    totals AS (
        SELECT r.provider,
               count(*) FILTER (WHERE r.finished_at > p_at - interval '1 hour') AS attempts_1h,
               count(*) FILTER (WHERE r.finished_at > p_at - interval '1 hour' AND r.outcome = 'succeeded')
               AS succeeded_1h,
               count(*) AS attempts_24h,
               count(*) FILTER (WHERE r.outcome = 'succeeded') AS succeeded_24h
        FROM recent AS r
        GROUP BY r.provider
    ),
    last_failures AS (
        SELECT DISTINCT ON (r.provider) r.provider, r.error, r.finished_at
        FROM recent AS r
        WHERE r.outcome IN ('failed', 'retry', 'skipped')
        ORDER BY r.provider ASC, r.finished_at DESC
    )
    SELECT p.provider, p.kind, p.description, p.is_pager,
           coalesce(t.attempts_1h, 0), coalesce(t.succeeded_1h, 0),
           coalesce(t.attempts_24h, 0), coalesce(t.succeeded_24h, 0),
           f.error, f.finished_at,
           coalesce(q.pending, 0), coalesce(q.due, 0), coalesce(q.held, 0), q.oldest_age_seconds,
           CASE WHEN g.theoretical_arrival > p_at THEN g.theoretical_arrival END
    FROM public.monitoring_providers AS p
    LEFT JOIN totals AS t ON t.provider = p.provider
    LEFT JOIN last_failures AS f ON f.provider = p.provider
    LEFT JOIN public.monitoring_delivery_queue AS q ON q.provider = p.provider
    LEFT JOIN public._monitoring_pacing AS g ON g.provider = p.provider
    ORDER BY p.provider
$$;
COMMENT ON FUNCTION monitoring_channel_health(timestamptz) IS
'Each channel (row of monitoring_providers): attempts and successes in the last hour and day, its last failed,
retried or skipped attempt''s error and time, what waits (pending, due now, held) and the oldest pending''s age,
and not_before when its pace or a provider''s 429 holds its next send. Never a secret: channels keep only the
names of the variables that hold theirs.';
REVOKE ALL ON FUNCTION monitoring_channel_health(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_channel_health(timestamptz) TO monitoring_reader, monitoring_admin;
