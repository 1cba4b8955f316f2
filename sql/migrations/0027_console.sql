-- pgalert 0027: the web console of `pgalert serve`. People sign in as console users; what each may do is their
-- role, checked by the database at every action, which is done through the same lifecycle as psql's.
--
-- - monitoring_console: the role serve's login holds for the console. It reads what monitoring_reader reads
--   and acts only through the monitoring_console_* functions, each given the person's session token.
-- - monitoring_console_users: who may sign in (a login, a display name, a role, an argon2 password hash that no
--   role may read; the console reads it through a function, for one login at a time).
-- - monitoring_console_sessions: by the SHA-256 of the token in the person's cookie (never the token).
-- - monitoring_console_sign_in_failures: failed sign-ins, which slow guessing down (sql/console.sql).

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'monitoring_console') THEN
        BEGIN
            CREATE ROLE monitoring_console NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database's migration created it a moment ago
        END;
    END IF;
END
$roles$;
GRANT monitoring_reader TO monitoring_console;
GRANT USAGE ON SCHEMA public TO monitoring_console;

CREATE TABLE monitoring_console_users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    login text NOT NULL UNIQUE CONSTRAINT console_login_is_simple CHECK (login ~ '^[a-z0-9][a-z0-9._@+-]{0,99}$'),
    display_name text NOT NULL CONSTRAINT console_name_is_short_text CHECK (
        btrim(display_name) <> '' AND char_length(display_name) <= 100
    ),
    role text NOT NULL CONSTRAINT console_role_is_known CHECK (role IN ('viewer', 'responder', 'admin')),
    person_id bigint REFERENCES monitoring_people (id) ON DELETE SET NULL,
    -- NULL for a user who signs in only through the trusted proxy's header
    password_hash text CONSTRAINT password_hash_is_argon2 CHECK (password_hash ~ '^\$argon2id\$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL DEFAULT session_user,
    disabled_at timestamptz
);
COMMENT ON TABLE monitoring_console_users IS
'Who may sign in to the console, and as what: viewer (reads everything), responder (+ acknowledge, resolve,
reopen, silence), admin (+ maintenance windows and rules). Made with `pgalert user create`; the password hash
(argon2id) is read by no role, only checked through monitoring_console_begin_sign_in.';

CREATE TABLE monitoring_console_sessions (
    token_sha256 bytea PRIMARY KEY CONSTRAINT session_hash_is_sha256 CHECK (octet_length(token_sha256) = 32),
    user_id bigint NOT NULL REFERENCES monitoring_console_users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    client text
);
CREATE INDEX monitoring_console_sessions_expires ON monitoring_console_sessions (expires_at);
COMMENT ON TABLE monitoring_console_sessions IS
'Signed-in console sessions, by the SHA-256 of the token in the person''s cookie; every serve process finds them.';

CREATE TABLE monitoring_console_sign_in_failures (
    login text NOT NULL,
    client text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX monitoring_console_sign_in_failures_login ON monitoring_console_sign_in_failures (login, failed_at);
CREATE INDEX monitoring_console_sign_in_failures_client ON monitoring_console_sign_in_failures (client, failed_at);
COMMENT ON TABLE monitoring_console_sign_in_failures IS
'Failed console sign-ins of the last hour: too many for one login or from one address refuse the next for a while.';

REVOKE ALL ON monitoring_console_users, monitoring_console_sessions, monitoring_console_sign_in_failures FROM PUBLIC;
-- admins and the console see who may sign in, never the password hashes
GRANT SELECT (id, login, display_name, role, person_id, created_at, created_by, disabled_at)
ON monitoring_console_users TO monitoring_admin, monitoring_console;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0027', 'console');
