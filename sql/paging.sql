-- Paging people directly: verified contact methods, each person's notification rules, and the pages that run
-- those rules until the alert is acknowledged or resolved.
--
-- Owns: monitoring_contact_methods, monitoring_contact_verifications, monitoring_contact_verification_tries,
--       monitoring_notification_rules, monitoring_person_pages
--
-- The rules, decided here so that every dispatcher agrees:
-- - an escalation step that names a person (sql/escalation.sql) pages them: their notification rules run from
--   that moment, each at its delay ("push at once, SMS after 2 minutes, call after 5"), while the escalation
--   keeps its own clock; every later step that names them pages them again (their rules start over), and so does
--   a reopen (or PagerDuty's unacknowledge) for everyone the acknowledge or resolve stopped paging;
-- - a method gets nothing until it is verified (a 6-digit code sent to it, valid 15 minutes, at most one send a
--   minute, typed back with monitoring_verify_contact_method and judged once that try is committed) and nothing
--   while it is disabled; the dispatcher's claim checks that again when it sends (sql/outbox.sql);
-- - an address is its person's secret (a push topic is read by whoever knows it): readers and the outbox see it
--   masked (monitoring_contacts, monitoring_mask_contact_address), only admins and the claim read it;
-- - a message that fails (the channel refused it, or the provider reports it undelivered, busy or unanswered)
--   or that a method's rate limit or a STOP texted from its number stops (recorded as skipped, with the reason)
--   hands over to the person's next rule at once, not at that rule's delay;
-- - acknowledging or resolving the alert ends its pages: messages not yet sent are skipped, and each person a
--   page reached, but the one who acted, gets one short status message (target status:<page id>:...);
-- - every message is a delivery of action notify, target page:<page id>:<rule id>, with its attempts, through
--   the channel that carries its kind (sms and voice: twilio; push: ntfy; email; slack), so it is retried and
--   recorded as every delivery is. pgalert's own messages to a method (a verification code, a test page) hang
--   on an alert of their own, stored as history, so they are in the outbox too and never page anyone else.

-- The channel that carries a kind of contact method: the kind's default channel, else its first by name.
CREATE OR REPLACE FUNCTION _monitoring_contact_channel(p_kind text)
RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT p.provider
    FROM public.monitoring_providers AS p
    WHERE p.kind = CASE p_kind WHEN 'sms' THEN 'twilio' WHEN 'voice' THEN 'twilio' WHEN 'push' THEN 'ntfy'
                               ELSE p_kind END
      AND 'notify' = ANY (p.actions)
    ORDER BY p.provider = p.kind DESC, p.provider
    LIMIT 1
$$;
REVOKE ALL ON FUNCTION _monitoring_contact_channel(text) FROM PUBLIC;

-- What one message to a contact method carries: who, how, and why, and the address only masked; the dispatcher's
-- claim puts in the method's address (and the keys email and slack_member_id, by which the email and Slack channels
-- address a person) when it is sent (sql/outbox.sql), so a reader of the outbox never reads it.
CREATE OR REPLACE FUNCTION _monitoring_contact_context(p_method monitoring_contact_methods, p_person text, p_reason text)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$
    SELECT jsonb_build_object('person', p_person, 'reason', p_reason, 'contact_method_id', p_method.id,
                              'contact', jsonb_build_object(
                                  'kind', p_method.kind,
                                  'shown', public.monitoring_mask_contact_address(p_method.kind, p_method.address)))
$$;
REVOKE ALL ON FUNCTION _monitoring_contact_context(monitoring_contact_methods, text, text) FROM PUBLIC;

-- Contact methods as a reader may see them.
CREATE OR REPLACE VIEW monitoring_contacts
WITH (security_barrier)
AS
SELECT
    m.id,
    p.name AS person,
    m.kind,
    m.enabled,
    m.verified_at,
    m.opted_out_at,
    coalesce(m.enabled AND m.verified_at IS NOT NULL AND m.opted_out_at IS NULL, FALSE) AS ready,
    CASE
        WHEN pg_catalog.pg_has_role(current_user, 'monitoring_admin', 'MEMBER') THEN m.address
        ELSE public.monitoring_mask_contact_address(m.kind, m.address)
    END AS address_shown,
    (
        SELECT string_agg(r.delay::text, ', ' ORDER BY r.delay)
        FROM public.monitoring_notification_rules AS r
        WHERE r.contact_method_id = m.id
    ) AS rule_delays
FROM public.monitoring_people AS p
INNER JOIN public.monitoring_contact_methods AS m ON p.id = m.person_id;
COMMENT ON VIEW monitoring_contacts IS
'Contact methods with their address as the reader may see it: whole for admins, masked for everyone else (an
address is its person''s secret: a push topic is read by whoever knows it), whether each may get messages now
(ready: enabled, verified, not opted out) and the delays of the rules that use it.';
REVOKE ALL ON monitoring_contacts FROM PUBLIC;
GRANT SELECT ON monitoring_contacts TO monitoring_reader;

-- Why a message to a method may not go now: its rate limit (GoAlert's: voice 3 in 15 minutes and 7 an hour, SMS
-- 5 and 11), counting what was sent to it, alert pages and pgalert's own messages alike. Alert pages come first:
-- a status message (a code, a test page) leaves the last message of each limit to them. NULL: it may go.
CREATE OR REPLACE FUNCTION _monitoring_contact_limited(
    p_method_id bigint, p_kind text, p_at timestamptz, p_alert_page boolean
)
RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT format('rate limited: %s messages to this %s in the last %s%s', sent.n, p_kind, limit_.label,
                  CASE WHEN p_alert_page THEN '' ELSE ' (the last of its limit is kept for alert pages)' END)
    FROM (VALUES ('voice', 3, interval '15 minutes', '15 minutes'), ('voice', 7, interval '1 hour', 'hour'),
                 ('sms', 5, interval '15 minutes', '15 minutes'), ('sms', 11, interval '1 hour', 'hour'),
                 ('push', 20, interval '15 minutes', '15 minutes'))
         AS limit_ (kind, per, within, label)
    CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM public.monitoring_deliveries AS d
        WHERE d.context ? 'contact_method_id' AND d.context ->> 'contact_method_id' = p_method_id::text
          AND d.created_at > p_at - limit_.within AND d.created_at <= p_at AND d.status <> 'skipped'
    ) AS sent
    WHERE limit_.kind = p_kind AND sent.n >= limit_.per - CASE WHEN p_alert_page THEN 0 ELSE 1 END
    ORDER BY limit_.within
    LIMIT 1
$$;
REVOKE ALL ON FUNCTION _monitoring_contact_limited(bigint, text, timestamptz, boolean) FROM PUBLIC;

-- The pages whose messages are due at p_at go out (through sql/outbox.sql); p_alert_ids narrows the run to some
-- alerts. A rule is due at its delay after the page started, or at once when the person's last message before
-- it failed or was skipped. Returns how many messages it queued (skipped ones included).
CREATE OR REPLACE FUNCTION _monitoring_run_person_pages(p_at timestamptz, p_alert_ids bigint[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_messages jsonb;
    v_queued integer := 0;
BEGIN
    -- an alert no longer open ends its pages (a test page runs on a history alert, to its end)
    UPDATE public.monitoring_person_pages AS pg
    SET finished_at = p_at, finish_reason = a.status
    FROM public.monitoring_alerts AS a
    WHERE a.id = pg.alert_id AND pg.finished_at IS NULL AND a.status <> 'open' AND pg.reason <> 'test page'
      AND (p_alert_ids IS NULL OR pg.alert_id = ANY (p_alert_ids));
    -- each round may hand over to the next rule at once (a method over its limit is skipped); a person has a
    -- handful of rules, so a few rounds reach the end of any chain
    FOR v_round IN 1..10 LOOP
        WITH rules AS (
            SELECT pg.id AS page_id, pg.alert_id, pg.started_at, pg.reason, p.name AS person, r.id AS rule_id, r.delay,
                   m AS method, sent.status AS sent_status,
                   row_number() OVER (PARTITION BY pg.id ORDER BY r.delay, r.id) AS position
            FROM public.monitoring_person_pages AS pg
            JOIN public.monitoring_people AS p ON p.id = pg.person_id
            JOIN public.monitoring_notification_rules AS r ON r.person_id = pg.person_id
            JOIN public.monitoring_contact_methods AS m ON m.id = r.contact_method_id
            LEFT JOIN LATERAL (
                SELECT d.status FROM public.monitoring_deliveries AS d
                WHERE d.alert_id = pg.alert_id AND d.target = 'page:' || pg.id || ':' || r.id
                LIMIT 1
            ) AS sent ON TRUE
            WHERE pg.finished_at IS NULL AND (p_alert_ids IS NULL OR pg.alert_id = ANY (p_alert_ids))
              -- a held alert's pages wait (sql/silences.sql); they resume when it is released
              AND NOT EXISTS (SELECT FROM public.monitoring_notification_holds AS h
                              WHERE h.alert_id = pg.alert_id AND h.released_at IS NULL)
              -- a number that texted STOP stays in the chain, to be skipped visibly (below), never silently
              AND m.enabled AND m.verified_at IS NOT NULL
              AND public._monitoring_contact_channel(m.kind) IS NOT NULL
        ),
        -- the last message sent on each page, and whether it fell through
        last_sent AS (
            SELECT DISTINCT ON (r.page_id) r.page_id, r.position, r.sent_status IN ('failed', 'skipped') AS fell_through
            FROM rules AS r WHERE r.sent_status IS NOT NULL
            ORDER BY r.page_id, r.position DESC
        ),
        due AS (
            SELECT r.*
            FROM rules AS r
            LEFT JOIN last_sent AS l ON l.page_id = r.page_id
            WHERE r.sent_status IS NULL
              AND (r.started_at + r.delay <= p_at OR r.reason = 'test page'
                   -- the next rule after one that fell through goes at once
                   OR (l.fell_through AND r.position = (SELECT min(n.position) FROM rules AS n
                                                          WHERE n.page_id = r.page_id AND n.sent_status IS NULL)))
        )
        SELECT jsonb_agg(jsonb_build_object(
                   'alert_id', d.alert_id,
                   'provider', public._monitoring_contact_channel((d.method).kind),
                   'target', 'page:' || d.page_id || ':' || d.rule_id,
                   'context', public._monitoring_contact_context(d.method, d.person, d.reason)
                              || jsonb_build_object('page', d.page_id, 'rule', d.rule_id),
                   'skip', coalesce(CASE WHEN (d.method).opted_out_at IS NOT NULL
                                             THEN 'opted out: this number texted STOP (START resumes)' END,
                                        public._monitoring_contact_limited((d.method).id, (d.method).kind, p_at,
                                                                           d.reason <> 'test page')))
                   ORDER BY d.page_id, d.position)
        INTO v_messages
        FROM due AS d;
        EXIT WHEN v_messages IS NULL;
        v_queued := v_queued + public._monitoring_enqueue_messages(v_messages);
        -- a test page runs through each method once; only a skipped message needs another round
        EXIT WHEN NOT jsonb_path_exists(v_messages, '$[*] ? (@.skip != null)');
    END LOOP;
    RETURN v_queued;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_run_person_pages(timestamptz, bigint[]) FROM PUBLIC;

-- The people of p_people (below) who have notification rules, once per alert and person.
CREATE OR REPLACE FUNCTION _monitoring_people_to_page(p_people jsonb)
RETURNS TABLE (alert_id bigint, person_id bigint, reason text)
LANGUAGE sql STABLE
AS $$
    -- the last reason given for a person (the highest step) names their page
    SELECT DISTINCT ON (1, 2) (p.page ->> 'alert_id')::bigint, (p.page ->> 'person_id')::bigint, p.page ->> 'reason'
    FROM jsonb_array_elements(p_people) WITH ORDINALITY AS p (page, n)
    WHERE EXISTS (SELECT FROM public.monitoring_notification_rules AS r
                  WHERE r.person_id = (p.page ->> 'person_id')::bigint)
    ORDER BY 1, 2, p.n DESC
$$;
REVOKE ALL ON FUNCTION _monitoring_people_to_page(jsonb) FROM PUBLIC;

-- People are paged for an alert from p_at (p_people: {alert_id, person_id, reason}), each with notification rules
-- by those rules, from the first: a page of theirs still running since before p_at ends (paged again) and a new
-- one starts, whose messages are its own (their targets name the page), so a later step, or a reopen, wakes them as
-- the first page did. A page started at p_at or later already is kept: one call pages a person once. The caller
-- then runs the pages of those alerts (_monitoring_run_person_pages).
CREATE OR REPLACE FUNCTION _monitoring_start_person_pages(p_people jsonb, p_at timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE public.monitoring_person_pages AS pg
    SET finished_at = p_at, finish_reason = 'paged again'
    FROM public._monitoring_people_to_page(p_people) AS x
    WHERE pg.alert_id = x.alert_id AND pg.person_id = x.person_id AND pg.finished_at IS NULL AND pg.started_at < p_at;
    INSERT INTO public.monitoring_person_pages (alert_id, person_id, started_at, reason)
    SELECT x.alert_id, x.person_id, p_at, x.reason FROM public._monitoring_people_to_page(p_people) AS x
    ON CONFLICT (alert_id, person_id) WHERE finished_at IS NULL DO NOTHING;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_start_person_pages(jsonb, timestamptz) FROM PUBLIC;

-- The people an escalation's steps just paged (its pages, sql/escalation.sql: {alert_id, person_id, context}, in
-- step order): every step that names a person pages them again, even one whose earlier page still runs.
CREATE OR REPLACE FUNCTION _monitoring_page_people(p_pages jsonb, p_at timestamptz)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT public._monitoring_start_person_pages(jsonb_agg(jsonb_build_object(
               'alert_id', p.page -> 'alert_id', 'person_id', p.page -> 'person_id',
               'reason', format('escalation level %s of policy %s', p.page -> 'context' ->> 'level',
                                p.page -> 'context' ->> 'policy'))
               ORDER BY p.n), p_at)
    FROM jsonb_array_elements(p_pages) WITH ORDINALITY AS p (page, n);
$$;
REVOKE ALL ON FUNCTION _monitoring_page_people(jsonb, timestamptz) FROM PUBLIC;

-- The alert needs its people again though no step named them yet (reopened, PagerDuty's unacknowledge; the end of
-- a snooze would call this too): everyone whose page of it the acknowledge or resolve ended is paged again from
-- p_at, by their rules from the first, and the messages due now go.
CREATE OR REPLACE FUNCTION _monitoring_page_again(p_alert_id bigint, p_why text, p_at timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM public._monitoring_start_person_pages(jsonb_agg(jsonb_build_object(
                'alert_id', p_alert_id, 'person_id', ended.person_id, 'reason', p_why)), p_at)
    FROM (
        SELECT DISTINCT pg.person_id FROM public.monitoring_person_pages AS pg
        WHERE pg.alert_id = p_alert_id AND pg.finish_reason IN ('acknowledged', 'resolved')
          AND NOT EXISTS (SELECT FROM public.monitoring_person_pages AS running
                          WHERE running.alert_id = p_alert_id AND running.person_id = pg.person_id
                            AND running.finished_at IS NULL)
    ) AS ended;
    PERFORM public._monitoring_run_person_pages(p_at, ARRAY[p_alert_id]);
END
$$;
REVOKE ALL ON FUNCTION _monitoring_page_again(bigint, text, timestamptz) FROM PUBLIC;

-- Alerts released at p_at from holds that began after their pages did: each page's rules resume where they stood,
-- the held time not counted (a call due 3 minutes after the silence began is due 3 minutes after it ends).
CREATE OR REPLACE FUNCTION _monitoring_resume_person_pages(p_alert_ids bigint[], p_at timestamptz)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.monitoring_person_pages AS pg
    SET started_at = pg.started_at + (p_at - greatest(held.since, pg.started_at))
    FROM (SELECT x.alert_id, public._monitoring_held_since(x.alert_id, p_at) AS since
          FROM unnest(p_alert_ids) AS x (alert_id)) AS held
    WHERE pg.alert_id = held.alert_id AND pg.finished_at IS NULL AND held.since < p_at
$$;
REVOKE ALL ON FUNCTION _monitoring_resume_person_pages(bigint[], timestamptz) FROM PUBLIC;

-- People whose page an acknowledge or resolve just ended (p_why, at p_at) and who were reached by it hear who
-- took the alert (GoAlert's status updates), so nobody gets up for an alert already taken: one short text or
-- push, on the last of their methods that reached them and is not a call (else their first text or push rule's),
-- never to the person who acted, and skipped, visibly, over its rate limit as every status message is (the last
-- message of each limit is kept for alert pages). Returns how many were queued.
CREATE OR REPLACE FUNCTION _monitoring_tell_paged_people(p_alert_id bigint, p_why text, p_at timestamptz)
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT public._monitoring_enqueue_messages(jsonb_agg(jsonb_build_object(
               'alert_id', p_alert_id,
               'provider', public._monitoring_contact_channel((told.method).kind),
               -- a page ended again after a reopen tells its person again
               'target', 'status:' || told.page_id || ':' || p_why || ':' || (extract(EPOCH FROM p_at) * 1000)::bigint,
               'context', public._monitoring_contact_context(
                   told.method, told.person, format('alert %s %s by %s', p_alert_id, p_why, told.actor)),
               'skip', public._monitoring_contact_limited((told.method).id, (told.method).kind, p_at, FALSE))
           ORDER BY told.page_id))
    FROM (
        SELECT pg.id AS page_id, p.name AS person, actor.name AS actor,
               (SELECT m
                FROM public.monitoring_notification_rules AS r
                JOIN public.monitoring_contact_methods AS m ON m.id = r.contact_method_id
                LEFT JOIN LATERAL (
                    SELECT max(d.id) AS last_id FROM public.monitoring_deliveries AS d
                    WHERE d.alert_id = p_alert_id AND d.target = 'page:' || pg.id || ':' || r.id AND d.attempts > 0
                ) AS sent ON TRUE
                WHERE r.person_id = pg.person_id AND m.kind IN ('sms', 'push')
                  AND m.enabled AND m.verified_at IS NOT NULL AND m.opted_out_at IS NULL
                  AND public._monitoring_contact_channel(m.kind) IS NOT NULL
                ORDER BY sent.last_id DESC NULLS LAST, r.delay, r.id
                LIMIT 1) AS method
        FROM public.monitoring_person_pages AS pg
        JOIN public.monitoring_people AS p ON p.id = pg.person_id
        CROSS JOIN LATERAL (
            SELECT CASE p_why WHEN 'acknowledged' THEN a.acknowledged_by ELSE a.resolved_by END AS name
            FROM public.monitoring_alerts AS a WHERE a.id = p_alert_id
        ) AS actor
        WHERE pg.alert_id = p_alert_id AND pg.finished_at = p_at AND pg.finish_reason = p_why
          AND pg.reason <> 'test page' AND p.name IS DISTINCT FROM actor.name
          AND EXISTS (SELECT FROM public.monitoring_deliveries AS d
                      WHERE d.alert_id = p_alert_id AND starts_with(d.target, 'page:' || pg.id || ':')
                        AND d.attempts > 0)
    ) AS told
    WHERE (told.method).id IS NOT NULL  -- a row IS NOT NULL only when every column is
$$;
REVOKE ALL ON FUNCTION _monitoring_tell_paged_people(bigint, text, timestamptz) FROM PUBLIC;

-- The alert was acknowledged or resolved (sql/alerts.sql): its pages end, their messages not yet sent are
-- skipped, and the people they reached are told.
CREATE OR REPLACE FUNCTION _monitoring_end_person_pages(p_alert_id bigint, p_why text, p_at timestamptz)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE public.monitoring_person_pages
    SET finished_at = p_at, finish_reason = p_why
    WHERE alert_id = p_alert_id AND finished_at IS NULL AND reason <> 'test page';
    IF FOUND THEN
        PERFORM public._monitoring_skip_unsent_messages(p_alert_id, 'page:', 'the alert was ' || p_why);
        PERFORM public._monitoring_tell_paged_people(p_alert_id, p_why, p_at);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_end_person_pages(bigint, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _monitoring_end_person_pages(bigint, text, timestamptz) TO monitoring_admin;

-- A message of a page failed or was skipped after it was queued (the channel refused it; Twilio says it was
-- undelivered, busy or not answered): the person's next rule goes at once.
CREATE OR REPLACE FUNCTION _monitoring_page_fell_through()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM public._monitoring_run_person_pages(now(), ARRAY[NEW.alert_id]);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_page_fell_through() FROM PUBLIC;

CREATE OR REPLACE TRIGGER monitoring_deliveries_page_fell_through
AFTER UPDATE OF status ON monitoring_deliveries
FOR EACH ROW
WHEN (new.status IN ('failed', 'skipped') AND old.status IS DISTINCT FROM new.status AND new.target LIKE 'page:%')
EXECUTE FUNCTION _monitoring_page_fell_through();
COMMENT ON TRIGGER monitoring_deliveries_page_fell_through ON monitoring_deliveries IS
'A page''s message that failed or was skipped hands over to the person''s next notification rule at once.';

-- A verification code is a secret for 15 minutes: once its message is sent (or given up), nobody needs it; only
-- its hash stays, to check the tries against. It runs as the dispatcher that completed the message, which may not
-- write the verifications.
CREATE OR REPLACE FUNCTION _monitoring_forget_sent_code()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE public.monitoring_contact_verifications SET code = NULL
    WHERE 'verify:' || contact_method_id = NEW.target AND code IS NOT NULL;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_forget_sent_code() FROM PUBLIC;

DROP TRIGGER IF EXISTS monitoring_deliveries_forget_codes ON monitoring_deliveries;
CREATE TRIGGER monitoring_deliveries_forget_codes
AFTER UPDATE OF status ON monitoring_deliveries
FOR EACH ROW
WHEN (new.completed_at IS NOT NULL AND new.target LIKE 'verify:%')
EXECUTE FUNCTION _monitoring_forget_sent_code();
COMMENT ON TRIGGER monitoring_deliveries_forget_codes ON monitoring_deliveries IS
'A verification code is forgotten once its message is sent or given up: the database keeps only its hash.';

-- pgalert's own message to a person (a verification code, a test page): an alert of its own, stored as history
-- (it pages nobody, counts in no SLA figure), that the message hangs on. Returns its id.
CREATE OR REPLACE FUNCTION _monitoring_own_message_alert(p_type text, p_person text, p_title text, p_details jsonb)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.monitoring_alerts
        (alert_type, severity, title, message, source, details, status, created_at, resolved_at, resolved_by)
    VALUES (p_type, 'info', p_title, '', p_person, p_details, 'resolved', now(), now(), 'pgalert')
    RETURNING id
$$;
REVOKE ALL ON FUNCTION _monitoring_own_message_alert(text, text, text, jsonb) FROM PUBLIC;

CREATE OR REPLACE FUNCTION monitoring_add_contact_method(p_person text, p_kind text, p_address text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_person_id bigint := (SELECT p.id FROM public.monitoring_people AS p WHERE p.name = p_person);
    v_id bigint;
BEGIN
    IF v_person_id IS NULL THEN
        RAISE EXCEPTION 'no person is named %', coalesce(quote_literal(p_person), 'NULL')
            USING ERRCODE = 'no_data_found', HINT = 'INSERT INTO monitoring_people (name) first';
    END IF;
    INSERT INTO public.monitoring_contact_methods (person_id, kind, address)
    VALUES (v_person_id, lower(btrim(p_kind)), btrim(p_address))
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION monitoring_add_contact_method(text, text, text) IS
'Add a contact method for a person: kind sms or voice (an E.164 number, +14155550100), push (an ntfy topic on
the ntfy channel''s server), email, or slack (a member id); returns its id. It gets nothing until verified:
SELECT monitoring_send_verification_code(id), then monitoring_verify_contact_method(id, code).';
REVOKE ALL ON FUNCTION monitoring_add_contact_method(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_add_contact_method(text, text, text) TO monitoring_admin;

CREATE OR REPLACE FUNCTION monitoring_send_verification_code(p_contact_method_id bigint)
RETURNS timestamptz
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_method public.monitoring_contact_methods;
    v_person text;
    v_last public.monitoring_contact_verifications;
    -- six digits from the server's strong random source (gen_random_uuid), never from random()
    v_code text := lpad((('x' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 12))::bit(48)::bigint
                         % 1000000)::text, 6, '0');
    v_alert_id bigint;
    v_channel text;
BEGIN
    SELECT * INTO v_method FROM public.monitoring_contact_methods AS m WHERE m.id = p_contact_method_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contact method % does not exist', coalesce(p_contact_method_id::text, 'NULL')
            USING ERRCODE = 'no_data_found';
    END IF;
    SELECT * INTO v_last FROM public.monitoring_contact_verifications AS v WHERE v.contact_method_id = v_method.id;
    IF v_last.sent_at > now() - interval '1 minute' THEN
        RAISE EXCEPTION 'a code was sent to contact method % less than a minute ago', v_method.id
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'wait a minute, then ask again';
    END IF;
    IF public._monitoring_contact_limited(v_method.id, v_method.kind, now(), FALSE) IS NOT NULL THEN
        RAISE EXCEPTION 'contact method %: %', v_method.id, public._monitoring_contact_limited(v_method.id, v_method.kind, now(), FALSE)
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'wait, then ask again';
    END IF;
    v_channel := public._monitoring_contact_channel(v_method.kind);
    IF v_channel IS NULL THEN
        RAISE EXCEPTION 'no channel takes % messages', v_method.kind
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'configure the twilio (sms, voice), ntfy (push), email or slack channel';
    END IF;
    v_person := (SELECT p.name FROM public.monitoring_people AS p WHERE p.id = v_method.person_id);
    -- the code waits here, where only the sending dispatcher's claim reads it (sql/outbox.sql), never in the outbox
    INSERT INTO public.monitoring_contact_verifications AS v (contact_method_id, code_sha256, code, sent_at, expires_at)
    VALUES (v_method.id, sha256(convert_to(v_method.id || ':' || v_code, 'UTF8')), v_code, now(),
            now() + interval '15 minutes')
    ON CONFLICT (contact_method_id) DO UPDATE
    SET code_sha256 = excluded.code_sha256, code = excluded.code, sent_at = excluded.sent_at,
        expires_at = excluded.expires_at, failed_tries = 0;
    DELETE FROM public.monitoring_contact_verification_tries WHERE contact_method_id = v_method.id;
    v_alert_id := public._monitoring_own_message_alert('pgalert_contact_verification', v_person,
        'pgalert verification code', jsonb_build_object('contact_method_id', v_method.id));
    PERFORM public._monitoring_enqueue_messages(jsonb_build_array(jsonb_build_object(
        'alert_id', v_alert_id, 'provider', v_channel, 'target', 'verify:' || v_method.id,
        'context', public._monitoring_contact_context(v_method, v_person, 'your pgalert verification code'))));
    RETURN now() + interval '15 minutes';
END
$$;
COMMENT ON FUNCTION monitoring_send_verification_code(bigint) IS
'Send a 6-digit code to a contact method (at most once a minute); it is valid 15 minutes and for 5 tries.
Returns when it expires. No role but the sending dispatcher reads it, and the database keeps only its hash once
it is sent.';
REVOKE ALL ON FUNCTION monitoring_send_verification_code(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_send_verification_code(bigint) TO monitoring_admin;

-- A try is recorded, never judged, in the caller's transaction: had it been judged there, a caller could read the
-- verdict and roll the try back (all million codes tried in 73 s). It is judged by
-- monitoring_contact_method_verified in a later transaction, once committed, and then it counts for good.
CREATE OR REPLACE FUNCTION monitoring_verify_contact_method(p_contact_method_id bigint, p_code text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM public.monitoring_contact_verifications AS v
                   WHERE v.contact_method_id = p_contact_method_id AND v.expires_at > now()
                     AND (SELECT count(*) FROM public.monitoring_contact_verification_tries AS t
                          WHERE t.contact_method_id = p_contact_method_id) < 5) THEN
        RAISE EXCEPTION 'no code is waiting for contact method %', coalesce(p_contact_method_id::text, 'NULL')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'codes last 15 minutes and 5 tries: SELECT monitoring_send_verification_code(id) for another';
    END IF;
    INSERT INTO public.monitoring_contact_verification_tries (contact_method_id, code_sha256)
    VALUES (p_contact_method_id, sha256(convert_to(p_contact_method_id || ':' || btrim(coalesce(p_code, '')), 'UTF8')));
END
$$;
COMMENT ON FUNCTION monitoring_verify_contact_method(bigint, text) IS
'Type back the code sent to a contact method. The try is judged once this transaction commits, never inside it:
then SELECT monitoring_contact_method_verified(id). Every committed try counts; more than 5 end the code.';
REVOKE ALL ON FUNCTION monitoring_verify_contact_method(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_verify_contact_method(bigint, text) TO monitoring_admin;

-- The committed tries are judged together: while there are 5 or fewer, one with the code verifies the method; a
-- sixth ends the code. So the verdicts anyone learns are those of at most 5 committed tries, whatever was rolled
-- back (a judgement rolled back is made again, the same, from the same committed tries), and a try still open in
-- another transaction counts the moment it commits.
CREATE OR REPLACE FUNCTION monitoring_contact_method_verified(p_contact_method_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_check public.monitoring_contact_verifications;
    v_tries integer;
    v_right boolean;
BEGIN
    IF EXISTS (SELECT FROM public.monitoring_contact_methods AS m
               WHERE m.id = p_contact_method_id AND m.verified_at IS NOT NULL) THEN
        RETURN TRUE;
    END IF;
    SELECT * INTO v_check FROM public.monitoring_contact_verifications AS v
    WHERE v.contact_method_id = p_contact_method_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN FALSE;
    END IF;
    SELECT count(*), coalesce(bool_or(t.code_sha256 = v_check.code_sha256 AND t.tried_at < v_check.expires_at), FALSE)
    INTO v_tries, v_right
    FROM public.monitoring_contact_verification_tries AS t
    WHERE t.contact_method_id = p_contact_method_id AND t.tried_in <> pg_current_xact_id();
    IF NOT v_right OR v_tries > 5 THEN
        RETURN FALSE;
    END IF;
    UPDATE public.monitoring_contact_methods SET verified_at = now() WHERE id = p_contact_method_id;
    DELETE FROM public.monitoring_contact_verifications WHERE contact_method_id = p_contact_method_id;
    RETURN TRUE;
END
$$;
COMMENT ON FUNCTION monitoring_contact_method_verified(bigint) IS
'Whether a contact method is verified, judging the tries committed for its code (monitoring_verify_contact_method):
true once one had the code, with no more than 5 tries in all; false while none did (a try made in this same
transaction is not judged).';
REVOKE ALL ON FUNCTION monitoring_contact_method_verified(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_contact_method_verified(bigint) TO monitoring_admin;

CREATE OR REPLACE FUNCTION monitoring_test_page(p_person text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_person public.monitoring_people;
    v_alert_id bigint;
BEGIN
    SELECT * INTO v_person FROM public.monitoring_people AS p WHERE p.name = p_person;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no person is named %', coalesce(quote_literal(p_person), 'NULL') USING ERRCODE = 'no_data_found';
    END IF;
    IF NOT EXISTS (SELECT FROM public.monitoring_notification_rules AS r WHERE r.person_id = v_person.id) THEN
        RAISE EXCEPTION '% has no notification rules', p_person
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'INSERT INTO monitoring_notification_rules (person_id, contact_method_id, delay)';
    END IF;
    v_alert_id := public._monitoring_own_message_alert('pgalert_test_page', p_person,
        'pgalert test page for ' || p_person, '{}');
    INSERT INTO public.monitoring_person_pages (alert_id, person_id, started_at, reason)
    VALUES (v_alert_id, v_person.id, now(), 'test page');
    PERFORM public._monitoring_run_person_pages(now(), ARRAY[v_alert_id]);
    UPDATE public.monitoring_person_pages SET finished_at = now(), finish_reason = 'test page sent'
    WHERE alert_id = v_alert_id;
    RETURN v_alert_id;
END
$$;
COMMENT ON FUNCTION monitoring_test_page(text) IS
'Walk a person''s notification rules at once, one message per verified, enabled method (rate limits hold), and
return the id of the test alert they hang on: SELECT target, status, last_error FROM monitoring_deliveries
WHERE alert_id = <id> says what each method did. A method that is not verified gets nothing.';
REVOKE ALL ON FUNCTION monitoring_test_page(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_test_page(text) TO monitoring_admin;

-- The owner of a number texted STOP (p_stop) or START to the Twilio number: every text method with that address
-- stops or starts getting messages, as carriers require. Returns how many methods changed.
CREATE OR REPLACE FUNCTION _monitoring_contact_opt_out(p_address text, p_stop boolean)
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH changed AS (
        UPDATE public.monitoring_contact_methods
        SET opted_out_at = CASE WHEN p_stop THEN now() END
        WHERE kind = 'sms' AND address = p_address AND (opted_out_at IS NULL) = p_stop
        RETURNING 1
    )
    SELECT count(*)::integer FROM changed
$$;
REVOKE ALL ON FUNCTION _monitoring_contact_opt_out(text, boolean) FROM PUBLIC;
