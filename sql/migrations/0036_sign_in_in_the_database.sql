-- pgalert 0036: the database checks a console password itself, and single sign-on is a setting of the database.
-- serve's login (monitoring_console) was handed each user's argon2 hash and told the database whether the password
-- matched, so whoever held serve's database credentials could open a session as any admin. Now serve only derives
-- the argon2 hash of what was typed, with the salt and costs the database gives it, and the database compares it
-- with its own (sql/console.sql). Each sign-in is reserved before that work: a reservation is a row here, counted
-- with the failures, so the per-login limit holds however many sign-ins arrive at once.

ALTER TABLE monitoring_console_sign_in_failures ADD COLUMN IF NOT EXISTS attempt_sha256 bytea;
COMMENT ON COLUMN monitoring_console_sign_in_failures.attempt_sha256 IS
'While a sign-in is under way: the SHA-256 of the attempt token its finish must present (once); NULL once finished.
Every row counts against the limits, so a sign-in is counted before its password is checked.';
CREATE UNIQUE INDEX IF NOT EXISTS monitoring_console_sign_in_attempts
ON monitoring_console_sign_in_failures (attempt_sha256) WHERE attempt_sha256 IS NOT NULL;
CREATE INDEX IF NOT EXISTS monitoring_console_sign_in_failures_by_login
ON monitoring_console_sign_in_failures (login, failed_at);

-- An install that signs people in through a proxy already (its sessions say so) keeps doing so.
INSERT INTO monitoring_settings (setting, value, description)
SELECT
    'console_single_sign_on' AS setting,
    CASE
        WHEN EXISTS (
            SELECT FROM monitoring_console_sessions AS s
            WHERE s.client = 'trusted proxy'
        ) THEN 'on'
        ELSE 'off'
    END AS value,
    'on: pgalert serve may open a console session for whomever its trusted proxy vouches for (--console-auth-header); '
    || 'off: only with the person''s password. Only an admin changes it, so serve''s own login cannot turn it on.' AS description
ON CONFLICT (setting) DO NOTHING;

-- their interfaces change: the definitions make them anew
DROP FUNCTION IF EXISTS monitoring_console_begin_sign_in(text, text);
DROP FUNCTION IF EXISTS monitoring_console_finish_sign_in(text, text, boolean, text, interval);

INSERT INTO _monitoring_migrations (version, name) VALUES ('0036', 'sign_in_in_the_database');
