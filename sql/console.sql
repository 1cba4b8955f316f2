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

-- Signing in with a password. The database checks it, so that serve's login, which may leak, can open no session
-- without the person's password and never reads a hash. argon2 is too costly to run in the database, so serve
-- derives it: the begin hands out the salt and costs of the person's argon2id hash (never the hash), serve
-- derives the hash of what was typed with them, and the finish compares the two here. Knowing the salt and costs
-- helps nobody: the hash of the right password is what a guess must produce.
--
-- Each sign-in is reserved before that work, as a row that counts with the failures, under a lock per login and
-- per address: however many arrive at once, a login gets 5 password checks in 15 minutes and an address 20, and
-- a finish must present the attempt its begin handed out, once.
CREATE OR REPLACE FUNCTION monitoring_console_begin_sign_in(p_login text, p_client text)
RETURNS TABLE (attempt text, argon2_settings text, hash_length integer)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_login text := left(lower(coalesce(p_login, '')), 100);
    v_client text := left(coalesce(p_client, ''), 100);
    v_hash text;
BEGIN
    -- always the login's lock first, then the address's: two sign-ins never wait on each other in a circle
    PERFORM pg_advisory_xact_lock(1886414690, hashtext(v_login));
    PERFORM pg_advisory_xact_lock(1886414691, hashtext(v_client));
    DELETE FROM public.monitoring_console_sign_in_failures AS f WHERE f.failed_at < now() - interval '1 hour';
    IF (SELECT count(*) FROM public.monitoring_console_sign_in_failures AS f
        WHERE f.login = v_login AND f.failed_at > now() - interval '15 minutes') >= 5
       OR (SELECT count(*) FROM public.monitoring_console_sign_in_failures AS f
           WHERE f.client = v_client AND f.failed_at > now() - interval '15 minutes') >= 20 THEN
        RAISE EXCEPTION 'too many failed sign-ins; try again in 15 minutes'
            USING ERRCODE = 'too_many_connections';
    END IF;
    attempt := gen_random_uuid()::text || gen_random_uuid()::text;
    INSERT INTO public.monitoring_console_sign_in_failures (login, client, attempt_sha256)
    VALUES (v_login, v_client, sha256(convert_to(attempt, 'UTF8')));
    SELECT u.password_hash INTO v_hash
    FROM public.monitoring_console_users AS u
    WHERE u.login = v_login AND u.disabled_at IS NULL;
    IF v_hash IS NOT NULL THEN
        -- $argon2id$v=19$m=...,t=...,p=...$<salt>$<hash>: all but the hash
        argon2_settings := left(v_hash, length(v_hash) - length(split_part(v_hash, '$', 6)));
        hash_length := length(split_part(v_hash, '$', 6)) * 3 / 4;
    ELSE
        -- no such user, or single sign-on only: the same answer in shape and cost, with a salt of its own that
        -- stays the same, so the answer does not say who exists
        argon2_settings := '$argon2id$v=19$m=65536,t=3,p=4$' || rtrim(encode(substring(sha256(convert_to(
            'pgalert sign-in ' || (SELECT i.installation_id::text FROM public._monitoring_installation AS i) || v_login,
            'UTF8')) FROM 1 FOR 16), 'base64'), '=') || '$';
        hash_length := 32;
    END IF;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION monitoring_console_begin_sign_in(text, text) IS
'The console only: reserve a sign-in (counted as a failure until it succeeds) and get what deriving the password''s
argon2id hash needs: the attempt token for the finish, the hash''s settings and salt (never the hash) and its length.
An error when this login failed 5 times or this address 20 times in 15 minutes.';
REVOKE ALL ON FUNCTION monitoring_console_begin_sign_in(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_begin_sign_in(text, text) TO monitoring_console;

CREATE OR REPLACE FUNCTION monitoring_console_finish_sign_in(
    p_login text, p_attempt text, p_derived_hash text, p_token text, p_lifetime interval DEFAULT interval '12 hours'
)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_login text := left(lower(coalesce(p_login, '')), 100);
    v_user public.monitoring_console_users;
    v_client text;
BEGIN
    IF octet_length(coalesce(p_token, '')) < 32 OR p_lifetime > interval '30 days' OR p_lifetime <= interval '0' THEN
        RAISE EXCEPTION 'a session needs a random token of at least 32 characters and a lifetime of at most 30 days'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- the attempt is spent whatever the outcome; its row stays as a failure unless the password matches
    UPDATE public.monitoring_console_sign_in_failures AS f SET attempt_sha256 = NULL
    WHERE f.attempt_sha256 = sha256(convert_to(coalesce(p_attempt, ''), 'UTF8')) AND f.login = v_login
      AND f.failed_at > now() - interval '15 minutes'
    RETURNING f.client INTO v_client;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no sign-in of % is under way with that attempt', v_login
            USING ERRCODE = 'invalid_authorization_specification', HINT = 'begin it with monitoring_console_begin_sign_in';
    END IF;
    SELECT u.* INTO v_user FROM public.monitoring_console_users AS u WHERE u.login = v_login AND u.disabled_at IS NULL;
    -- compared as digests, so the time taken says nothing of how much of the hash was right
    IF v_user.password_hash IS NULL OR sha256(convert_to(coalesce(p_derived_hash, ''), 'UTF8'))
                                       <> sha256(convert_to(split_part(v_user.password_hash, '$', 6), 'UTF8')) THEN
        RETURN FALSE;
    END IF;
    DELETE FROM public.monitoring_console_sign_in_failures AS f WHERE f.login = v_login AND f.attempt_sha256 IS NULL;
    DELETE FROM public.monitoring_console_sessions AS s WHERE s.expires_at < now();
    INSERT INTO public.monitoring_console_sessions (token_sha256, user_id, expires_at, client)
    VALUES (sha256(convert_to(p_token, 'UTF8')), v_user.id, now() + p_lifetime, v_client);
    RETURN TRUE;
END
$$;
COMMENT ON FUNCTION monitoring_console_finish_sign_in(text, text, text, text, interval) IS
'The console only: finish the sign-in its begin reserved (the attempt, once) with the argon2id hash derived from
the typed password (base64 as in the encoded hash): when it is the person''s, open a session for the token in their
cookie (kept as its SHA-256) and return true; else false, and the attempt stays counted as a failure.';
REVOKE ALL ON FUNCTION monitoring_console_finish_sign_in(text, text, text, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION monitoring_console_finish_sign_in(text, text, text, text, interval) TO monitoring_console;

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
DECLARE
    v_user_id bigint;
    v_token_sha256 bytea := sha256(convert_to(coalesce(p_token, ''), 'UTF8'));
    -- the proxy vouches again on every request, so a person loses nothing with an older session it opened:
    -- requests without a cookie (health checks, API calls through the proxy) cannot grow the table without bound
    v_kept constant integer := 10;
BEGIN
    -- serve's login may leak: only an admin, in the database, lets it vouch for people
    IF coalesce((SELECT s.value FROM public.monitoring_settings AS s WHERE s.setting = 'console_single_sign_on'), 'off')
       <> 'on' THEN
        RAISE EXCEPTION 'single sign-on is off in this database'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'an admin turns it on: UPDATE monitoring_settings SET value = ''on'' '
                         'WHERE setting = ''console_single_sign_on''';
    END IF;
    IF octet_length(coalesce(p_token, '')) < 32 OR p_lifetime > interval '30 days' THEN
        RAISE EXCEPTION 'a session needs a random token of at least 32 characters and a lifetime of at most 30 days'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT u.id INTO v_user_id FROM public.monitoring_console_users AS u
    WHERE u.login = lower(p_login) AND u.disabled_at IS NULL;
    IF v_user_id IS NULL THEN
        RETURN FALSE;
    END IF;
    DELETE FROM public.monitoring_console_sessions WHERE expires_at < now();
    INSERT INTO public.monitoring_console_sessions (token_sha256, user_id, expires_at, client)
    VALUES (v_token_sha256, v_user_id, now() + p_lifetime, 'trusted proxy');
    DELETE FROM public.monitoring_console_sessions AS s
    WHERE s.user_id = v_user_id AND s.client = 'trusted proxy' AND s.token_sha256 <> v_token_sha256
      AND s.token_sha256 NOT IN (SELECT k.token_sha256 FROM public.monitoring_console_sessions AS k
                                 WHERE k.user_id = v_user_id AND k.client = 'trusted proxy'
                                 ORDER BY k.created_at DESC LIMIT v_kept);
    RETURN TRUE;
END
$$;
COMMENT ON FUNCTION monitoring_console_proxy_session(text, text, interval) IS
'The console only, in trusted-proxy mode: open a session for the user the single sign-on proxy vouched for; a
person keeps the newest 10 sessions opened this way (sessions opened with a password are not touched). False when
no enabled console user has that login; an error while the setting console_single_sign_on is not on.';
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
    -- created_by reads "<serve's login> for <person>" (the accountable trigger, sql/silences.sql)
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
    -- what a silence holds: the open alerts it matches (acknowledged ones have nothing left to hold; the
    -- silence's INSERT holds exactly these, sql/silences.sql)
    SELECT a.id FROM public.monitoring_alerts AS a
    WHERE a.status = 'open'
      AND NOT EXISTS (SELECT FROM public._monitoring_failed_matchers(a, p_matchers))
    ORDER BY a.id DESC;
END
$$;
COMMENT ON FUNCTION monitoring_silence_preview(jsonb) IS
'The open alerts these matchers match, newest first: what a silence made of them now would hold (its
escalation, pages and unsent notifications). Bad matchers raise the same error the silence''s INSERT would.';
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
    PERFORM pg_advisory_xact_lock(1886414692, 0);  -- one change to console users at a time: _monitoring_console_user_change
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
    PERFORM pg_advisory_xact_lock(1886414692, 0);  -- one change to console users at a time: _monitoring_console_user_change
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
               'opted_out', m.opted_out_at IS NOT NULL,
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

-- Changes to console users queue behind one another, and a console admin's right to make one is read after the
-- wait: two admins demoting each other at once each saw the other still an admin, and no enabled admin was left.
-- Once in the queue, the console also never leaves no enabled admin (an admin login at the CLI still can).
CREATE OR REPLACE FUNCTION _monitoring_console_user_change(p_token text)
RETURNS monitoring_console_users
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1886414692, 0);
    RETURN public._monitoring_console_actor(p_token, 'admin', 'manage users');
END
$$;
REVOKE ALL ON FUNCTION _monitoring_console_user_change(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION _monitoring_console_keep_an_admin()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM public.monitoring_console_users AS u WHERE u.role = 'admin' AND u.disabled_at IS NULL) THEN
        RAISE EXCEPTION 'that would leave the console without an enabled admin'
            USING ERRCODE = 'insufficient_privilege', HINT = 'make another admin first';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION _monitoring_console_keep_an_admin() FROM PUBLIC;

CREATE OR REPLACE FUNCTION monitoring_console_save_user_as_admin(
    p_token text, p_login text, p_display_name text, p_role text, p_password_hash text DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user public.monitoring_console_users := public._monitoring_console_user_change(p_token);
    v_id bigint;
BEGIN
    IF lower(p_login) = v_user.login AND p_role <> 'admin' THEN
        RAISE EXCEPTION 'an admin cannot take their own admin role away'
            USING ERRCODE = 'insufficient_privilege', HINT = 'another admin can';
    END IF;
    v_id := public.monitoring_console_save_user(p_login, p_display_name, p_role, p_password_hash);
    PERFORM public._monitoring_console_keep_an_admin();
    RETURN v_id;
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
    v_user public.monitoring_console_users := public._monitoring_console_user_change(p_token);
    v_disabled boolean;
BEGIN
    IF lower(p_login) = v_user.login THEN
        RAISE EXCEPTION 'an admin cannot disable themselves' USING ERRCODE = 'insufficient_privilege';
    END IF;
    v_disabled := public.monitoring_console_disable_user(p_login);
    PERFORM public._monitoring_console_keep_an_admin();
    RETURN v_disabled;
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
