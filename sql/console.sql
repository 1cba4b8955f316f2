-- The console of `pgalert serve`: signing in, sessions, and what a signed-in person may do.
--
-- The console's login (role monitoring_console) reads what monitoring_reader reads. It changes nothing itself:
-- every action is one of these functions, given the session token from the person's cookie, and the database
-- checks that the session is live and that the person's role allows the action before doing it through the same
-- functions psql uses, as that person, via 'console'. A console process that is compromised can still only act
-- for people who are signed in, as far as their roles go.
--
-- Owns: monitoring_console_users, monitoring_console_sessions, monitoring_console_sign_in_failures

-- The user behind a live session, or an error that says to sign in again.
CREATE OR REPLACE FUNCTION _monitoring_console_user(p_token text)
RETURNS monitoring_console_users
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user public.monitoring_console_users;
BEGIN
    SELECT u.* INTO v_user
    FROM public.monitoring_console_sessions AS s
    JOIN public.monitoring_console_users AS u ON u.id = s.user_id
    WHERE s.token_sha256 = sha256(convert_to(coalesce(p_token, ''), 'UTF8'))
      AND s.expires_at > now() AND u.disabled_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'not signed in, or the session has ended'
            USING ERRCODE = 'invalid_authorization_specification', HINT = 'sign in again';
    END IF;
    RETURN v_user;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_console_user(text) FROM PUBLIC;

-- The user behind the session, if their role is at least p_role; else an error naming what is missing.
CREATE OR REPLACE FUNCTION _monitoring_console_actor(p_token text, p_role text, p_action text)
RETURNS monitoring_console_users
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user public.monitoring_console_users := public._monitoring_console_user(p_token);
    v_ranks constant text[] := ARRAY['viewer', 'responder', 'admin'];
BEGIN
    IF array_position(v_ranks, v_user.role) < array_position(v_ranks, p_role) THEN
        RAISE EXCEPTION '% is a console %, and only % may %', v_user.login, v_user.role,
            CASE p_role WHEN 'admin' THEN 'an admin' ELSE 'a ' || p_role || ' or an admin' END, p_action
            USING ERRCODE = 'insufficient_privilege', HINT = 'an admin changes roles with `pgalert user role`';
    END IF;
    RETURN v_user;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_console_actor(text, text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION monitoring_console_begin_sign_in(p_login text, p_client text)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_hash text;
BEGIN
    -- failures of the last 15 minutes: 5 for one login, 20 from one address
    IF (SELECT count(*) FROM public.monitoring_console_sign_in_failures AS f
        WHERE f.login = lower(p_login) AND f.failed_at > now() - interval '15 minutes') >= 5
       OR (SELECT count(*) FROM public.monitoring_console_sign_in_failures AS f
           WHERE f.client = coalesce(p_client, '') AND f.failed_at > now() - interval '15 minutes') >= 20 THEN
        RAISE EXCEPTION 'too many failed sign-ins; try again in 15 minutes'
            USING ERRCODE = 'too_many_connections';
    END IF;
    SELECT u.password_hash INTO v_hash
    FROM public.monitoring_console_users AS u
    WHERE u.login = lower(p_login) AND u.disabled_at IS NULL;
    RETURN v_hash;
END
$$;
COMMENT ON FUNCTION monitoring_console_begin_sign_in(text, text) IS
'The console only: the argon2 hash to check a password against (NULL for no such enabled user), unless this
login or address failed too often lately (5 and 20 in 15 minutes), which is an error.';
REVOKE ALL ON FUNCTION monitoring_console_begin_sign_in(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_begin_sign_in(text, text) TO monitoring_console;

CREATE OR REPLACE FUNCTION monitoring_console_finish_sign_in(
    p_login text, p_client text, p_succeeded boolean, p_token text, p_lifetime interval DEFAULT interval '12 hours'
)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user_id bigint;
BEGIN
    DELETE FROM public.monitoring_console_sign_in_failures WHERE failed_at < now() - interval '1 hour';
    DELETE FROM public.monitoring_console_sessions WHERE expires_at < now();
    SELECT u.id INTO v_user_id FROM public.monitoring_console_users AS u
    WHERE u.login = lower(p_login) AND u.disabled_at IS NULL;
    IF NOT p_succeeded OR v_user_id IS NULL THEN
        INSERT INTO public.monitoring_console_sign_in_failures (login, client)
        VALUES (left(lower(coalesce(p_login, '')), 100), left(coalesce(p_client, ''), 100));
        RETURN FALSE;
    END IF;
    IF octet_length(coalesce(p_token, '')) < 32 OR p_lifetime > interval '30 days' OR p_lifetime <= interval '0' THEN
        RAISE EXCEPTION 'a session needs a random token of at least 32 characters and a lifetime of at most 30 days'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM public.monitoring_console_sign_in_failures WHERE login = lower(p_login);
    INSERT INTO public.monitoring_console_sessions (token_sha256, user_id, expires_at, client)
    VALUES (sha256(convert_to(p_token, 'UTF8')), v_user_id, now() + p_lifetime, left(p_client, 100));
    RETURN TRUE;
END
$$;
COMMENT ON FUNCTION monitoring_console_finish_sign_in(text, text, boolean, text, interval) IS
'The console only: after checking the password, open a session for the token in the person''s cookie (kept as its
SHA-256), or record a failed sign-in. True when a session was opened.';
REVOKE ALL ON FUNCTION monitoring_console_finish_sign_in(text, text, boolean, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_finish_sign_in(text, text, boolean, text, interval) TO monitoring_console;

CREATE OR REPLACE FUNCTION monitoring_console_session(p_token text)
RETURNS TABLE (user_id bigint, login text, display_name text, role text, expires_at timestamptz)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT u.id, u.login, u.display_name, u.role, s.expires_at
    FROM public.monitoring_console_sessions AS s
    JOIN public.monitoring_console_users AS u ON u.id = s.user_id
    WHERE s.token_sha256 = sha256(convert_to(coalesce(p_token, ''), 'UTF8'))
      AND s.expires_at > now() AND u.disabled_at IS NULL
$$;
COMMENT ON FUNCTION monitoring_console_session(text) IS
'The console only: who is signed in with this token, and until when; no row when nobody is.';
REVOKE ALL ON FUNCTION monitoring_console_session(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_session(text) TO monitoring_console;

CREATE OR REPLACE FUNCTION monitoring_console_proxy_session(
    p_login text, p_token text, p_lifetime interval DEFAULT interval '12 hours'
)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF octet_length(coalesce(p_token, '')) < 32 OR p_lifetime > interval '30 days' THEN
        RAISE EXCEPTION 'a session needs a random token of at least 32 characters and a lifetime of at most 30 days'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO public.monitoring_console_sessions (token_sha256, user_id, expires_at, client)
    SELECT sha256(convert_to(p_token, 'UTF8')), u.id, now() + p_lifetime, 'trusted proxy'
    FROM public.monitoring_console_users AS u
    WHERE u.login = lower(p_login) AND u.disabled_at IS NULL;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION monitoring_console_proxy_session(text, text, interval) IS
'The console only, in trusted-proxy mode: open a session for the user the single sign-on proxy vouched for.
False when no enabled console user has that login.';
REVOKE ALL ON FUNCTION monitoring_console_proxy_session(text, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_proxy_session(text, text, interval) TO monitoring_console;

CREATE OR REPLACE FUNCTION monitoring_console_sign_out(p_token text)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM public.monitoring_console_sessions WHERE token_sha256 = sha256(convert_to(coalesce(p_token, ''), 'UTF8'))
$$;
COMMENT ON FUNCTION monitoring_console_sign_out(text) IS 'The console only: end this session.';
REVOKE ALL ON FUNCTION monitoring_console_sign_out(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_sign_out(text) TO monitoring_console;

CREATE OR REPLACE FUNCTION monitoring_console_acknowledge(p_token text, p_alert_ids bigint[], p_note text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user public.monitoring_console_users := public._monitoring_console_actor(p_token, 'responder', 'acknowledge');
    v_done integer := 0;
    v_alert_id bigint;
    v_was text;
BEGIN
    FOR v_alert_id IN SELECT DISTINCT unnest(p_alert_ids) ORDER BY 1 LOOP  -- in id order: no deadlock between two
        SELECT a.status INTO v_was FROM public.monitoring_alerts AS a WHERE a.id = v_alert_id;
        PERFORM public._monitoring_acknowledge(v_alert_id, v_user.display_name, nullif(btrim(p_note), ''), now(),
                                               'console');
        v_done := v_done + (v_was = 'open')::integer;
    END LOOP;
    RETURN v_done;
END
$$;
COMMENT ON FUNCTION monitoring_console_acknowledge(text, bigint[], text) IS
'The console only: a responder or admin acknowledges these alerts, as monitoring_acknowledge_alert does, by their
display name via console; returns how many it acknowledged (those already acknowledged or resolved are left).';
REVOKE ALL ON FUNCTION monitoring_console_acknowledge(text, bigint[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_acknowledge(text, bigint[], text) TO monitoring_console;

CREATE OR REPLACE FUNCTION monitoring_console_resolve(
    p_token text, p_alert_ids bigint[], p_note text DEFAULT NULL, p_false_positive boolean DEFAULT FALSE
)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user public.monitoring_console_users := public._monitoring_console_actor(p_token, 'responder', 'resolve');
    v_done integer := 0;
    v_alert_id bigint;
    v_was text;
BEGIN
    FOR v_alert_id IN SELECT DISTINCT unnest(p_alert_ids) ORDER BY 1 LOOP
        SELECT a.status INTO v_was FROM public.monitoring_alerts AS a WHERE a.id = v_alert_id;
        PERFORM public._monitoring_resolve(v_alert_id, v_user.display_name, nullif(btrim(p_note), ''),
                                           coalesce(p_false_positive, FALSE), now(), 'console');
        v_done := v_done + (v_was IS DISTINCT FROM 'resolved')::integer;
    END LOOP;
    RETURN v_done;
END
$$;
COMMENT ON FUNCTION monitoring_console_resolve(text, bigint[], text, boolean) IS
'The console only: a responder or admin resolves these alerts, as monitoring_resolve_alert does (false_positive
marks one that should not have fired), by their display name via console; returns how many it resolved.';
REVOKE ALL ON FUNCTION monitoring_console_resolve(text, bigint[], text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_resolve(text, bigint[], text, boolean) TO monitoring_console;

CREATE OR REPLACE FUNCTION monitoring_console_reopen(p_token text, p_alert_id bigint)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user public.monitoring_console_users := public._monitoring_console_actor(p_token, 'responder', 'reopen');
BEGIN
    RETURN (public._monitoring_reopen(p_alert_id, v_user.display_name, now(), 'console')).status;
END
$$;
COMMENT ON FUNCTION monitoring_console_reopen(text, bigint) IS
'The console only: a responder or admin reopens an acknowledged or resolved alert (its escalation resumes; a
resolved one only while no other alert of its dedup key is open); returns its status.';
REVOKE ALL ON FUNCTION monitoring_console_reopen(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_reopen(text, bigint) TO monitoring_console;

CREATE OR REPLACE FUNCTION monitoring_console_create_silence(
    p_token text, p_matchers jsonb, p_ends_at timestamptz, p_comment text, p_starts_at timestamptz DEFAULT now()
)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user public.monitoring_console_users := public._monitoring_console_actor(p_token, 'responder', 'silence');
BEGIN
    -- created_by reads "<serve's login> for <person>" (the accountable trigger, sql/hygiene.sql)
    RETURN public.monitoring_create_silence(p_matchers, p_ends_at, p_comment, p_starts_at,
                                            v_user.display_name || ' (console)');
END
$$;
COMMENT ON FUNCTION monitoring_console_create_silence(text, jsonb, timestamptz, text, timestamptz) IS
'The console only: a responder or admin silences alerts matching every matcher until p_ends_at, as
monitoring_create_silence does; returns the silence id.';
REVOKE ALL ON FUNCTION monitoring_console_create_silence(text, jsonb, timestamptz, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_create_silence(text, jsonb, timestamptz, text, timestamptz)
TO monitoring_console;

CREATE OR REPLACE FUNCTION monitoring_console_expire_silence(p_token text, p_silence_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user public.monitoring_console_users := public._monitoring_console_actor(p_token, 'responder', 'expire a silence');
BEGIN
    RETURN public.monitoring_expire_silence(p_silence_id, v_user.display_name || ' (console)');
END
$$;
COMMENT ON FUNCTION monitoring_console_expire_silence(text, bigint) IS
'The console only: a responder or admin ends a silence now; the alerts it alone held are notified at once.';
REVOKE ALL ON FUNCTION monitoring_console_expire_silence(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_expire_silence(text, bigint) TO monitoring_console;

CREATE OR REPLACE FUNCTION monitoring_silence_preview(p_matchers jsonb)
RETURNS TABLE (alert_id bigint)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- the check a silence's INSERT makes, so the preview and the save never disagree
    PERFORM public._monitoring_check_matchers(p_matchers, 'matchers');
    RETURN QUERY
    SELECT a.id FROM public.monitoring_alerts AS a
    WHERE a.status <> 'resolved'
      AND NOT EXISTS (SELECT FROM public._monitoring_failed_matchers(a, p_matchers))
    ORDER BY a.id DESC;
END
$$;
COMMENT ON FUNCTION monitoring_silence_preview(jsonb) IS
'The open and acknowledged alerts these matchers match, newest first: what a silence made of them would match
now. Bad matchers raise the same error the silence''s INSERT would.';
REVOKE ALL ON FUNCTION monitoring_silence_preview(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_silence_preview(jsonb) TO monitoring_reader, monitoring_admin;

-- Console users are made by an admin at the CLI (`pgalert user create`), which hashes the password.
CREATE OR REPLACE FUNCTION monitoring_console_save_user(
    p_login text, p_display_name text, p_role text, p_password_hash text DEFAULT NULL, p_person text DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_person_id bigint;
    v_id bigint;
BEGIN
    IF p_person IS NOT NULL THEN
        SELECT p.id INTO v_person_id FROM public.monitoring_people AS p WHERE p.name = p_person;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no person named % in monitoring_people', p_person USING ERRCODE = 'no_data_found';
        END IF;
    END IF;
    INSERT INTO public.monitoring_console_users (login, display_name, role, password_hash, person_id)
    VALUES (lower(p_login), p_display_name, p_role, p_password_hash, v_person_id)
    ON CONFLICT (login) DO UPDATE
    SET display_name = excluded.display_name, role = excluded.role,
        password_hash = coalesce(excluded.password_hash, monitoring_console_users.password_hash),
        person_id = coalesce(excluded.person_id, monitoring_console_users.person_id), disabled_at = NULL
    RETURNING id INTO v_id;
    -- a changed role or password ends the sessions opened under the old one
    DELETE FROM public.monitoring_console_sessions WHERE user_id = v_id;
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION monitoring_console_save_user(text, text, text, text, text) IS
'Admins (through `pgalert user create`): make or change a console user (role viewer, responder or admin; an argon2id
hash, or NULL to keep the password or for sign-in through the trusted proxy only); ends their sessions.';
REVOKE ALL ON FUNCTION monitoring_console_save_user(text, text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_save_user(text, text, text, text, text) TO monitoring_admin;

CREATE OR REPLACE FUNCTION monitoring_console_disable_user(p_login text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE public.monitoring_console_users SET disabled_at = now() WHERE login = lower(p_login) AND disabled_at IS NULL;
    IF NOT FOUND THEN
        RETURN FALSE;
    END IF;
    DELETE FROM public.monitoring_console_sessions
    WHERE user_id = (SELECT u.id FROM public.monitoring_console_users AS u WHERE u.login = lower(p_login));
    RETURN TRUE;
END
$$;
COMMENT ON FUNCTION monitoring_console_disable_user(text) IS
'Admins: a console user can no longer sign in, and their sessions end now; false when there was no such enabled user.';
REVOKE ALL ON FUNCTION monitoring_console_disable_user(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_disable_user(text) TO monitoring_admin;

CREATE OR REPLACE FUNCTION monitoring_console_add_override(
    p_token text, p_schedule text, p_person text, p_from timestamptz, p_until timestamptz, p_reason text DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user public.monitoring_console_users := public._monitoring_console_actor(p_token, 'responder', 'add an override');
BEGIN
    RETURN public.monitoring_add_override(p_schedule, p_person, p_from, p_until,
                                          concat_ws(' ', nullif(btrim(p_reason), ''),
                                                    '(added by ' || v_user.display_name || ' in the console)'));
END
$$;
COMMENT ON FUNCTION monitoring_console_add_override(text, text, text, timestamptz, timestamptz, text) IS
'The console only: a responder or admin has p_person cover a schedule for a while, as monitoring_add_override
does (its sentences on a mistake); the reason records who added it.';
REVOKE ALL ON FUNCTION monitoring_console_add_override(text, text, text, timestamptz, timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_add_override(text, text, text, timestamptz, timestamptz, text)
TO monitoring_console;

CREATE OR REPLACE FUNCTION monitoring_console_test_page(p_token text, p_person text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user public.monitoring_console_users := public._monitoring_console_actor(p_token, 'responder', 'send a test page');
BEGIN
    -- texts and calls cost money and wake people: an admin may test anyone, a responder only themselves
    IF v_user.role <> 'admin' AND v_user.person_id IS DISTINCT FROM (
        SELECT p.id FROM public.monitoring_people AS p WHERE p.name = p_person
    ) THEN
        RAISE EXCEPTION 'only an admin or % themselves may send % a test page', p_person, p_person
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RAISE LOG 'pgalert: test page for % sent by % in the console', p_person, v_user.login;
    RETURN public.monitoring_test_page(p_person);
END
$$;
COMMENT ON FUNCTION monitoring_console_test_page(text, text) IS
'The console only: walk p_person''s notification rules at once (monitoring_test_page); an admin may test anyone,
a responder only the person their console user is. Returns the test alert''s id.';
REVOKE ALL ON FUNCTION monitoring_console_test_page(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_test_page(text, text) TO monitoring_console;

-- The on-call page's contact methods, as the signed-in user may see them: an address is its person's secret (a
-- push topic lets whoever knows it read that person's pages and act on them), so only an admin and the person
-- themselves see it whole; every other user sees it masked.
CREATE OR REPLACE FUNCTION monitoring_console_contacts(p_token text)
RETURNS TABLE (person text, methods jsonb)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user public.monitoring_console_users := public._monitoring_console_user(p_token);
BEGIN
    RETURN QUERY
    SELECT p.name,
           jsonb_agg(jsonb_build_object(
               'kind', m.kind,
               'address', CASE WHEN v_user.role = 'admin' OR v_user.person_id = p.id THEN m.address
                               ELSE public.monitoring_mask_contact_address(m.kind, m.address) END,
               'ready', m.enabled AND m.verified_at IS NOT NULL AND m.opted_out_at IS NULL,
               'delays', (SELECT string_agg(r.delay::text, ', ' ORDER BY r.delay)
                          FROM public.monitoring_notification_rules AS r WHERE r.contact_method_id = m.id))
               ORDER BY m.kind, m.id)
    FROM public.monitoring_people AS p
    JOIN public.monitoring_contact_methods AS m ON m.person_id = p.id
    GROUP BY p.id, p.name
    ORDER BY p.name;
END
$$;
COMMENT ON FUNCTION monitoring_console_contacts(text) IS
'The console only: each person''s contact methods for the on-call page, with addresses whole for an admin and for
the person the signed-in user is, masked (monitoring_mask_contact_address) for everyone else.';
REVOKE ALL ON FUNCTION monitoring_console_contacts(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_contacts(text) TO monitoring_console;

CREATE OR REPLACE FUNCTION monitoring_console_set_rule_enabled(p_token text, p_rule_name text, p_enabled boolean)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user public.monitoring_console_users := public._monitoring_console_actor(p_token, 'admin',
                                                                               'enable or disable a rule');
BEGIN
    PERFORM public._monitoring_set_rule_enabled(p_rule_name, p_enabled);
    RAISE LOG 'pgalert: rule % % by % in the console', p_rule_name,
        CASE WHEN p_enabled THEN 'enabled' ELSE 'disabled' END, v_user.login;
    RETURN p_enabled;
END
$$;
COMMENT ON FUNCTION monitoring_console_set_rule_enabled(text, text, boolean) IS
'The console only: an admin puts an alert rule in or out of force.';
REVOKE ALL ON FUNCTION monitoring_console_set_rule_enabled(text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_set_rule_enabled(text, text, boolean) TO monitoring_console;

CREATE OR REPLACE FUNCTION monitoring_console_extend_silence(p_token text, p_silence_id bigint, p_ends_at timestamptz)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user public.monitoring_console_users := public._monitoring_console_actor(p_token, 'responder', 'extend a silence');
BEGIN
    IF NOT public._monitoring_extend_silence(p_silence_id, p_ends_at) THEN
        RETURN FALSE;
    END IF;
    RAISE LOG 'pgalert: silence % extended to % by % in the console', p_silence_id, p_ends_at, v_user.login;
    PERFORM public.monitoring_release_holds(now());  -- a shortened silence may have ended
    RETURN TRUE;
END
$$;
COMMENT ON FUNCTION monitoring_console_extend_silence(text, bigint, timestamptz) IS
'The console only: a responder or admin moves the end of a silence that has not ended (within silence_max_duration
of now); false when it had ended or the new end is past.';
REVOKE ALL ON FUNCTION monitoring_console_extend_silence(text, bigint, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_extend_silence(text, bigint, timestamptz) TO monitoring_console;

CREATE OR REPLACE FUNCTION monitoring_console_save_window(
    p_token text, p_name text, p_matchers jsonb, p_time_zone text, p_starts_at timestamptz, p_ends_at timestamptz,
    p_days_of_week integer[], p_start_time time, p_duration interval, p_comment text
)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user public.monitoring_console_users := public._monitoring_console_actor(p_token, 'admin',
                                                                               'change maintenance windows');
    v_id bigint;
BEGIN
    v_id := public._monitoring_save_window(p_name, p_matchers, p_time_zone, p_starts_at, p_ends_at, p_days_of_week,
                                           p_start_time, p_duration, p_comment, v_user.display_name || ' (console)');
    PERFORM public.monitoring_release_holds(now());  -- a window moved or shortened may hold nothing now
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION monitoring_console_save_window(
    text, text, jsonb, text, timestamptz, timestamptz, integer[], time, interval, text
) IS
'The console only: an admin makes or changes a maintenance window, one-off (p_starts_at to p_ends_at) or weekly
(p_days_of_week 1-7, ISO, at p_start_time for p_duration, in p_time_zone); returns its id.';
REVOKE ALL ON FUNCTION monitoring_console_save_window(
    text, text, jsonb, text, timestamptz, timestamptz, integer[], time, interval, text
) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_save_window(
    text, text, jsonb, text, timestamptz, timestamptz, integer[], time, interval, text
) TO monitoring_console;

CREATE OR REPLACE FUNCTION monitoring_console_set_window_enabled(p_token text, p_name text, p_enabled boolean)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user public.monitoring_console_users := public._monitoring_console_actor(p_token, 'admin',
                                                                               'change maintenance windows');
BEGIN
    PERFORM public._monitoring_set_window_enabled(p_name, p_enabled);
    RAISE LOG 'pgalert: maintenance window % % by % in the console', p_name,
        CASE WHEN p_enabled THEN 'enabled' ELSE 'disabled' END, v_user.login;
    PERFORM public.monitoring_release_holds(now());
    RETURN p_enabled;
END
$$;
COMMENT ON FUNCTION monitoring_console_set_window_enabled(text, text, boolean) IS
'The console only: an admin puts a maintenance window in or out of force; what it alone held is notified at once.';
REVOKE ALL ON FUNCTION monitoring_console_set_window_enabled(text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_set_window_enabled(text, text, boolean) TO monitoring_console;

CREATE OR REPLACE FUNCTION monitoring_console_save_user_as_admin(
    p_token text, p_login text, p_display_name text, p_role text, p_password_hash text DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user public.monitoring_console_users := public._monitoring_console_actor(p_token, 'admin', 'manage users');
BEGIN
    IF lower(p_login) = v_user.login AND p_role <> 'admin' THEN
        RAISE EXCEPTION 'an admin cannot take their own admin role away'
            USING ERRCODE = 'insufficient_privilege', HINT = 'another admin can';
    END IF;
    RETURN public.monitoring_console_save_user(p_login, p_display_name, p_role, p_password_hash);
END
$$;
COMMENT ON FUNCTION monitoring_console_save_user_as_admin(text, text, text, text, text) IS
'The console only: a console admin makes or changes a console user, as monitoring_console_save_user does (the
password hashed by the console); never their own role away.';
REVOKE ALL ON FUNCTION monitoring_console_save_user_as_admin(text, text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_save_user_as_admin(text, text, text, text, text) TO monitoring_console;

CREATE OR REPLACE FUNCTION monitoring_console_disable_user_as_admin(p_token text, p_login text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user public.monitoring_console_users := public._monitoring_console_actor(p_token, 'admin', 'manage users');
BEGIN
    IF lower(p_login) = v_user.login THEN
        RAISE EXCEPTION 'an admin cannot disable themselves' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN public.monitoring_console_disable_user(p_login);
END
$$;
COMMENT ON FUNCTION monitoring_console_disable_user_as_admin(text, text) IS
'The console only: a console admin disables a console user (never themselves); their sessions end now.';
REVOKE ALL ON FUNCTION monitoring_console_disable_user_as_admin(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_disable_user_as_admin(text, text) TO monitoring_console;

CREATE OR REPLACE FUNCTION monitoring_console_set_channel(
    p_token text, p_provider text, p_description text, p_settings jsonb
)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user public.monitoring_console_users := public._monitoring_console_actor(p_token, 'admin', 'change channels');
BEGIN
    IF jsonb_typeof(p_settings) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'a channel''s settings are a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM public._monitoring_set_channel_settings(p_provider, p_description, p_settings);
    RAISE LOG 'pgalert: channel % changed by % in the console', p_provider, v_user.login;
    RETURN TRUE;
END
$$;
COMMENT ON FUNCTION monitoring_console_set_channel(text, text, text, jsonb) IS
'The console only: a console admin changes a channel''s description and non-secret settings (a default
channel''s settings come from the dispatchers'' environment and stay); never its secret references.';
REVOKE ALL ON FUNCTION monitoring_console_set_channel(text, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_set_channel(text, text, text, jsonb) TO monitoring_console;
