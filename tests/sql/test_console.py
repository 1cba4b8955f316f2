"""The console's SQL interface (sql/console.sql), called as the console's login (monitoring_console) and as the
admins and readers around it: sessions, sign-in limits, and actions checked against the person's role."""

from __future__ import annotations

import secrets
import threading

import psycopg
import pytest
from argon2 import PasswordHasher

from dispatcher.console import auth
from tests.helpers import SEED_CRITICAL, make_schedule

PASSWORD = "correct horse battery"
# a real argon2id hash, at the lowest costs so the tests derive it in a moment
HASH = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)


def sign_in(session, login: str, password: str = PASSWORD, client: str = "10.0.0.1", token: str | None = None) -> bool:
    """What serve does: reserve the sign-in, derive the typed password's hash with the settings handed out, and
    let the database compare."""
    attempt, settings, length = session.execute(
        "SELECT attempt, argon2_settings, hash_length FROM monitoring_console_begin_sign_in(%s, %s)",
        (login, client)).fetchone()
    return session.execute("SELECT monitoring_console_finish_sign_in(%s, %s, %s, %s)",
                           (login, attempt, auth.derive_hash(settings, length, password),
                            token or secrets.token_urlsafe(32))).fetchone()[0]


@pytest.fixture
def console(connect):
    """The console's login, with three users signed in: a viewer, a responder and an admin; their tokens."""
    admin = connect("monitoring_admin")
    for login, role in (("vera", "viewer"), ("rick", "responder"), ("ada", "admin")):
        admin.execute("SELECT monitoring_console_save_user(%s, %s, %s, %s)", (login, login.title(), role, HASH))
    session = connect("monitoring_console")
    tokens = {}
    for login in ("vera", "rick", "ada"):
        tokens[login] = secrets.token_urlsafe(32)
        assert sign_in(session, login, token=tokens[login])
    return session, tokens


def test_a_session_names_its_user_and_role_and_nothing_for_a_wrong_token(console):
    session, tokens = console
    assert session.execute("SELECT login, display_name, role FROM monitoring_console_session(%s)",
                           (tokens["rick"],)).fetchall() == [("rick", "Rick", "responder")]
    assert session.execute("SELECT * FROM monitoring_console_session(%s)", ("forged" * 8,)).fetchall() == []


def test_a_responder_acknowledges_and_resolves_as_themselves_via_console_and_providers_are_told(conn, console):
    session, tokens = console
    alert_id = conn.execute(SEED_CRITICAL.rstrip(";") + " RETURNING id").fetchone()[0]
    assert session.execute("SELECT monitoring_console_acknowledge(%s, %s, 'on it')",
                           (tokens["rick"], [alert_id])).fetchone()[0] == 1
    row = conn.execute("SELECT status, acknowledged_by, acknowledged_via, acknowledge_note FROM monitoring_alerts "
                       "WHERE id = %s", (alert_id,)).fetchone()
    assert row == ("acknowledged", "Rick", "console", "on it")
    assert ("pagerduty", "acknowledge") in conn.execute(
        "SELECT provider, action FROM monitoring_deliveries WHERE alert_id = %s", (alert_id,)).fetchall()
    assert session.execute("SELECT monitoring_console_acknowledge(%s, %s)", (tokens["rick"], [alert_id])
                           ).fetchone()[0] == 0  # already acknowledged: nothing more
    assert session.execute("SELECT monitoring_console_resolve(%s, %s, 'fixed', true)",
                           (tokens["ada"], [alert_id])).fetchone()[0] == 1
    sla = conn.execute("SELECT acknowledged_by, resolved_by, false_positive FROM monitoring_sla_metrics "
                       "WHERE alert_id = %s", (alert_id,)).fetchone()
    assert sla == ("Rick", "Ada", True)


def test_a_viewer_may_not_act_and_the_database_says_so(conn, console):
    session, tokens = console
    alert_id = conn.execute(SEED_CRITICAL.rstrip(";") + " RETURNING id").fetchone()[0]
    for call in ("monitoring_console_acknowledge(%s, %s)", "monitoring_console_resolve(%s, %s)"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="vera is a console viewer"):
            session.execute(f"SELECT {call}", (tokens["vera"], [alert_id]))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        session.execute("SELECT monitoring_console_create_silence(%s, %s, now() + interval '1 hour', 'x')",
                        (tokens["vera"], '[{"field": "alert_type", "op": "=", "value": "x"}]'))
    assert conn.execute("SELECT status FROM monitoring_alerts WHERE id = %s", (alert_id,)).fetchone() == ("open",)


def test_no_action_without_a_live_session(conn, console):
    session, tokens = console
    alert_id = conn.execute(SEED_CRITICAL.rstrip(";") + " RETURNING id").fetchone()[0]
    with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification, match="not signed in"):
        session.execute("SELECT monitoring_console_acknowledge(%s, %s)", ("a" * 43, [alert_id]))
    session.execute("SELECT monitoring_console_sign_out(%s)", (tokens["rick"],))
    with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification):
        session.execute("SELECT monitoring_console_acknowledge(%s, %s)", (tokens["rick"], [alert_id]))
    conn.execute("UPDATE monitoring_console_sessions SET expires_at = now() - interval '1 second'")
    with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification):
        session.execute("SELECT monitoring_console_acknowledge(%s, %s)", (tokens["ada"], [alert_id]))


def test_a_disabled_user_or_a_changed_role_ends_their_sessions(connect, console):
    session, tokens = console
    admin = connect("monitoring_admin")
    admin.execute("SELECT monitoring_console_save_user('rick', 'Rick', 'viewer')")
    assert session.execute("SELECT * FROM monitoring_console_session(%s)", (tokens["rick"],)).fetchall() == []
    assert admin.execute("SELECT monitoring_console_disable_user('ada')").fetchone()[0]
    assert session.execute("SELECT * FROM monitoring_console_session(%s)", (tokens["ada"],)).fetchall() == []
    assert not sign_in(session, "ada")


def test_five_failed_sign_ins_for_a_login_refuse_the_sixth_attempt_even_with_the_right_password(console):
    session, _ = console
    for _ in range(5):
        assert not sign_in(session, "RICK", "wrong password!", client="10.0.0.9")
    with pytest.raises(psycopg.errors.TooManyConnections, match="too many failed sign-ins"):
        sign_in(session, "rick", client="10.0.0.2")


def test_twenty_failures_from_one_address_refuse_it_for_every_login(console):
    session, _ = console
    for number in range(20):
        assert not sign_in(session, f"guess{number}", client="10.9.9.9")
    with pytest.raises(psycopg.errors.TooManyConnections):
        sign_in(session, "ada", client="10.9.9.9")
    assert sign_in(session, "ada", client="10.0.0.1")


def test_a_sign_in_under_way_counts_before_its_password_is_checked(connect, console):
    """Five begun and never finished are five tries: the limit cannot be outrun by sign-ins at once (#35, 6)."""
    session, _ = console
    for _ in range(5):
        session.execute("SELECT * FROM monitoring_console_begin_sign_in('rick', '10.0.0.3')")
    with pytest.raises(psycopg.errors.TooManyConnections):
        sign_in(session, "rick", client="10.0.0.4")


def test_thirty_sign_ins_at_once_get_five_password_checks(connect, console):
    """Racing sessions, each as serve's login: the count and the reservation are one step under a lock."""
    sessions = [connect("monitoring_console") for _ in range(30)]
    barrier = threading.Barrier(len(sessions))
    outcomes: list[str] = []

    def begin(session) -> None:
        barrier.wait()
        try:
            session.execute("SELECT * FROM monitoring_console_begin_sign_in('ada', '10.0.0.5')")
            outcomes.append("reserved")
        except psycopg.errors.TooManyConnections:
            outcomes.append("refused")

    threads = [threading.Thread(target=begin, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * 25 + ["reserved"] * 5


# What whoever holds serve's database login (a leaked env file, an SSRF) might try, to be someone (#35, 3).
FORGERIES = {
    "no_attempt": "SELECT monitoring_console_finish_sign_in('ada', NULL, NULL, %(token)s)",
    "made_up_attempt": "SELECT monitoring_console_finish_sign_in('ada', 'a' || repeat('0', 71), '', %(token)s)",
    "empty_hash": "SELECT monitoring_console_finish_sign_in('ada', %(attempt)s, '', %(token)s)",
    "the_settings_as_hash": "SELECT monitoring_console_finish_sign_in('ada', %(attempt)s, %(settings)s, %(token)s)",
    "another_login_attempt": "SELECT monitoring_console_finish_sign_in('ada', %(rick_attempt)s, %(rick_hash)s, %(token)s)",
    "a_spent_attempt_again": "SELECT monitoring_console_finish_sign_in('rick', %(rick_attempt)s, %(rick_hash)s, %(token)s)",
    "proxy_session_while_sso_is_off": "SELECT monitoring_console_proxy_session('ada', %(token)s)",
    "read_the_hash": "SELECT password_hash FROM monitoring_console_users WHERE login = 'ada'",
    "read_a_hash_through_a_view": "SELECT * FROM monitoring_console_users",
    "widen_the_setting": "UPDATE monitoring_settings SET value = 'on' WHERE setting = 'console_single_sign_on'",
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_serves_login_cannot_open_a_session_without_the_password(conn, console, forgery):
    session, _ = console
    row = session.execute("SELECT attempt, argon2_settings FROM monitoring_console_begin_sign_in('ada', '10.0.0.7')"
                          ).fetchone()
    rick = session.execute("SELECT attempt, argon2_settings, hash_length FROM "
                           "monitoring_console_begin_sign_in('rick', '10.0.0.7')").fetchone()
    rick_hash = auth.derive_hash(rick[1], rick[2], PASSWORD)
    if forgery == "a_spent_attempt_again":
        assert session.execute("SELECT monitoring_console_finish_sign_in('rick', %s, %s, %s)",
                               (rick[0], rick_hash, secrets.token_urlsafe(32))).fetchone()[0]
    sessions_before = conn.execute("SELECT count(*) FROM monitoring_console_sessions").fetchone()[0]
    token = secrets.token_urlsafe(32)
    params = {"token": token, "attempt": row[0], "settings": row[1], "rick_attempt": rick[0], "rick_hash": rick_hash}
    opened = False
    try:
        result = session.execute(FORGERIES[forgery], params).fetchall()
        opened = result == [(True,)]
    except psycopg.Error:
        pass
    assert not opened
    assert session.execute("SELECT * FROM monitoring_console_session(%s)", (token,)).fetchall() == []
    assert conn.execute("SELECT count(*) FROM monitoring_console_sessions").fetchone()[0] == sessions_before
    # nor did begin hand out anything a hash could be made of without the password
    assert not row[1].endswith(HASH.rsplit("$", 1)[1]) and HASH.startswith(row[1])


def test_single_sign_on_opens_sessions_only_while_an_admin_has_turned_it_on(connect, console):
    session, _ = console
    token = secrets.token_urlsafe(32)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="single sign-on is off"):
        session.execute("SELECT monitoring_console_proxy_session('ada', %s)", (token,))
    connect("monitoring_admin").execute("UPDATE monitoring_settings SET value = 'on' WHERE setting = 'console_single_sign_on'")
    assert session.execute("SELECT monitoring_console_proxy_session('ada', %s)", (token,)).fetchone() == (True,)
    assert session.execute("SELECT login FROM monitoring_console_session(%s)", (token,)).fetchall() == [("ada",)]


def test_an_unknown_login_gets_an_answer_of_the_same_shape_every_time(console):
    session, _ = console
    begin = "SELECT argon2_settings, hash_length FROM monitoring_console_begin_sign_in(%s, '10.0.0.8')"
    first, again = (session.execute(begin, ("nobody",)).fetchone() for _ in range(2))
    assert first == again and first[0].startswith("$argon2id$v=19$m=65536,t=3,p=4$") and first[1] == 32
    assert session.execute(begin, ("somebody",)).fetchone() != first
    assert not sign_in(session, "nobody")


def test_sessions_a_proxy_opens_are_bounded_per_person_and_other_sessions_are_kept(conn, console):
    """A single sign-on proxy vouches on every request, so losing one of its sessions costs nothing; requests
    that come without a cookie (health checks, API calls through the proxy) must not grow the table."""
    session, tokens = console
    conn.execute("UPDATE monitoring_settings SET value = 'on' WHERE setting = 'console_single_sign_on'")
    conn.execute("INSERT INTO monitoring_console_sessions (token_sha256, user_id, expires_at, client) "
                 "SELECT sha256(convert_to('expired' || u.login, 'UTF8')), u.id, now() - interval '1 minute', "
                 "'trusted proxy' FROM monitoring_console_users AS u")
    opened = []
    for number in range(40):
        opened.append(secrets.token_urlsafe(32))
        assert session.execute("SELECT monitoring_console_proxy_session(%s, %s)",
                               ("RICK" if number % 2 else "rick", opened[-1])).fetchone()[0]
        if number == 20:
            assert session.execute("SELECT monitoring_console_proxy_session('vera', %s)",
                                   (secrets.token_urlsafe(32),)).fetchone()[0]
    counts = dict(conn.execute("SELECT u.login, count(*) FROM monitoring_console_sessions AS s "
                               "JOIN monitoring_console_users AS u ON u.id = s.user_id GROUP BY u.login").fetchall())
    assert counts == {"rick": 10 + 1, "vera": 1 + 1, "ada": 1}  # the newest 10 a proxy opened, + a signed-in one
    live = [token for token in opened
            if session.execute("SELECT 1 FROM monitoring_console_session(%s)", (token,)).fetchall()]
    assert live == opened[-10:]
    for login in ("rick", "vera", "ada"):  # sessions opened with a password are not the proxy's to end
        assert session.execute("SELECT login FROM monitoring_console_session(%s)", (tokens[login],)
                               ).fetchall() == [(login,)]


def test_the_console_cannot_read_a_password_hash_or_open_a_session_with_a_short_token(console):
    session, _ = console
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        session.execute("SELECT password_hash FROM monitoring_console_users")
    attempt = session.execute("SELECT attempt FROM monitoring_console_begin_sign_in('ada', '10.0.0.1')").fetchone()[0]
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        session.execute("SELECT monitoring_console_finish_sign_in('ada', %s, '', 'short')", (attempt,))


def test_the_console_cannot_widen_its_rights_through_its_definer_functions(console):
    """Each SECURITY DEFINER function pins its search_path: a caller's own schema objects are never picked up,
    and the console's login still cannot write a table directly."""
    session, tokens = console
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        session.execute("UPDATE monitoring_console_users SET role = 'admin' WHERE login = 'vera'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        session.execute("INSERT INTO monitoring_console_sessions (token_sha256, user_id, expires_at) "
                        "VALUES (sha256('x'), 1, now() + interval '1 day')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        session.execute("SELECT monitoring_console_save_user('vera', 'Vera', 'admin')")
    session.execute("SET search_path = pg_temp, public")
    session.execute("CREATE FUNCTION pg_temp.sha256(bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT $1 $$")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        session.execute("SELECT monitoring_console_acknowledge(%s, ARRAY[1]::bigint[])", (tokens["vera"],))


def test_the_silence_preview_matches_what_the_silence_then_holds_and_refuses_what_the_insert_refuses(conn, console):
    session, tokens = console
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, source) VALUES "
                 "('deploy_check', 'warning', 'a', 'api'), ('deploy_check', 'warning', 'b', 'web'), "
                 "('disk_full', 'warning', 'c', 'api')")
    matchers = '[{"field": "alert_type", "op": "=", "value": "deploy_check"}, {"field": "source", "op": "=~", "value": "ap.*"}]'
    preview = session.execute("SELECT a.title FROM monitoring_silence_preview(%s) AS p "
                              "JOIN monitoring_alerts AS a ON a.id = p.alert_id", (matchers,)).fetchall()
    assert preview == [("a",)]
    bad = '[{"field": "alert_type", "op": "=~", "value": "(a)\\\\1"}]'
    with pytest.raises(psycopg.errors.InvalidRegularExpression) as previewed:
        session.execute("SELECT * FROM monitoring_silence_preview(%s)", (bad,))
    with pytest.raises(psycopg.errors.InvalidRegularExpression) as saved:
        session.execute("SELECT monitoring_console_create_silence(%s, %s, now() + interval '1 hour', 'deploy')",
                        (tokens["rick"], bad))
    assert str(previewed.value).split(":")[0] == str(saved.value).split(":")[0]
    silence_id = session.execute("SELECT monitoring_console_create_silence(%s, %s, now() + interval '1 hour', 'deploy')",
                                 (tokens["rick"], matchers)).fetchone()[0]
    created_by = conn.execute("SELECT created_by FROM monitoring_silences WHERE id = %s", (silence_id,)).fetchone()[0]
    assert created_by.endswith(" for Rick (console)") and created_by.startswith("pgalert_login_console_")
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, source) VALUES "
                 "('deploy_check', 'warning', 'again', 'apex')")
    held = conn.execute("SELECT a.title FROM monitoring_notification_holds AS h JOIN monitoring_alerts AS a "
                        "ON a.id = h.alert_id WHERE h.cause_id = %s ORDER BY h.id", (silence_id,)).fetchall()
    assert held == [("a",), ("again",)]  # the open alert the preview named, held at once, and the new one
    assert session.execute("SELECT monitoring_console_expire_silence(%s, %s)", (tokens["rick"], silence_id)
                           ).fetchone()[0]


def test_a_responder_adds_an_override_with_the_databases_sentence_on_a_mistake(conn, console):
    session, tokens = console
    make_schedule(conn, "payments", "Europe/Berlin", ["Alice", "Bob"])
    added = session.execute("SELECT monitoring_console_add_override(%s, 'payments', 'Bob', now(), now() + interval '2 hours', "
                            "'swap')", (tokens["rick"],)).fetchone()[0]
    reason = conn.execute("SELECT reason FROM monitoring_oncall_overrides WHERE id = %s", (added,)).fetchone()[0]
    assert reason == "swap (added by Rick in the console)"
    with pytest.raises(psycopg.errors.ExclusionViolation, match="already has override"):
        session.execute("SELECT monitoring_console_add_override(%s, 'payments', 'Alice', now(), now() + interval '1 hour')",
                        (tokens["ada"],))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        session.execute("SELECT monitoring_console_add_override(%s, 'payments', 'Alice', now() + interval '3 hours', "
                        "now() + interval '4 hours')", (tokens["vera"],))


def test_only_an_admin_enables_or_disables_a_rule(conn, console):
    session, tokens = console
    conn.execute("INSERT INTO monitoring_alert_rules (rule_name, rule_type, event_type, window_size, threshold, severity) "
                 "VALUES ('checkout_errors', 'count', 'checkout_error', interval '5 minutes', 10, 'critical')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only an admin"):
        session.execute("SELECT monitoring_console_set_rule_enabled(%s, 'checkout_errors', false)", (tokens["rick"],))
    assert session.execute("SELECT monitoring_console_set_rule_enabled(%s, 'checkout_errors', false)",
                           (tokens["ada"],)).fetchone() == (False,)
    assert conn.execute("SELECT enabled FROM monitoring_alert_rules WHERE rule_name = 'checkout_errors'").fetchone() == (False,)
    with pytest.raises(psycopg.errors.NoDataFound):
        session.execute("SELECT monitoring_console_set_rule_enabled(%s, 'nope', true)", (tokens["ada"],))


def test_channel_health_counts_attempts_of_the_last_hour_and_day_and_shows_the_last_error(conn, connect):
    conn.execute(SEED_CRITICAL)
    delivery = conn.execute("SELECT id FROM monitoring_deliveries WHERE provider = 'pagerduty'").fetchone()[0]
    conn.execute("""INSERT INTO monitoring_delivery_attempts (delivery_id, attempt, dispatcher, started_at, finished_at,
                    outcome, http_status, error) VALUES
                    (%(d)s, 1, 'x', now() - interval '3 hours', now() - interval '3 hours', 'retry', 503, 'busy'),
                    (%(d)s, 2, 'x', now() - interval '30 minutes', now() - interval '30 minutes', 'succeeded', 202, NULL),
                    (%(d)s, 3, 'x', now() - interval '2 days', now() - interval '2 days', 'failed', 400, 'too old')""",
                 {"d": delivery})
    reader = connect("monitoring_reader")
    row = reader.execute("SELECT attempts_1h, succeeded_1h, attempts_24h, succeeded_24h, last_error, pending "
                         "FROM monitoring_channel_health() WHERE provider = 'pagerduty'").fetchone()
    assert row == (1, 1, 2, 1, "busy", 1)


def test_a_console_admin_manages_users_but_never_their_own_role_away_and_a_responder_not_at_all(conn, console):
    session, tokens = console
    assert session.execute("SELECT monitoring_console_save_user_as_admin(%s, 'nina', 'Nina', 'viewer', %s)",
                           (tokens["ada"], HASH)).fetchone()[0]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="own admin role"):
        session.execute("SELECT monitoring_console_save_user_as_admin(%s, 'ada', 'Ada', 'viewer')", (tokens["ada"],))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="disable themselves"):
        session.execute("SELECT monitoring_console_disable_user_as_admin(%s, 'ada')", (tokens["ada"],))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only an admin"):
        session.execute("SELECT monitoring_console_save_user_as_admin(%s, 'rick', 'Rick', 'admin')", (tokens["rick"],))
    assert session.execute("SELECT monitoring_console_disable_user_as_admin(%s, 'nina')", (tokens["ada"],)).fetchone()[0]
    assert conn.execute("SELECT role, disabled_at IS NOT NULL FROM monitoring_console_users WHERE login = 'rick'"
                        ).fetchone() == ("responder", False)


CROSSED_CHANGES = {
    "demote_each_other": ("SELECT monitoring_console_save_user_as_admin(%s, %s, 'Admin', 'viewer')",) * 2,
    "disable_each_other": ("SELECT monitoring_console_disable_user_as_admin(%s, %s)",) * 2,
    "one_demotes_one_disables": ("SELECT monitoring_console_save_user_as_admin(%s, %s, 'Admin', 'viewer')",
                                 "SELECT monitoring_console_disable_user_as_admin(%s, %s)"),
}


def take_rights(barrier, session, call: str, token: str, other: str, outcomes: list[str], i: int) -> None:
    barrier.wait()
    try:
        session.execute(call, (token, other))
        outcomes[i] = "done"
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.InvalidAuthorizationSpecification):
        outcomes[i] = "refused"  # no longer an admin, or no longer signed in: the other's change came first


@pytest.mark.parametrize("change", sorted(CROSSED_CHANGES))
def test_two_admins_taking_each_others_rights_at_once_leave_one_admin(connect, change):
    """Ten rounds of two console admins, each taking the other's rights at the same moment (#35, 15): one wins,
    the other is refused with a sentence, never a deadlock, and the console always keeps an enabled admin."""
    admin = connect("monitoring_admin")
    sessions = [connect("monitoring_console") for _ in range(2)]
    for round_ in range(10):
        logins = [f"ada{round_}", f"adam{round_}"]
        for login in logins:
            admin.execute("SELECT monitoring_console_save_user(%s, 'Admin', 'admin', %s)", (login, HASH))
        tokens = [secrets.token_urlsafe(32) for _ in logins]
        for session, login, token in zip(sessions, logins, tokens, strict=True):
            assert sign_in(session, login, token=token)
        barrier = threading.Barrier(2)
        outcomes: list[str] = [""] * 2
        threads = [threading.Thread(target=take_rights, args=(barrier, sessions[i], CROSSED_CHANGES[change][i],
                                                              tokens[i], logins[1 - i], outcomes, i))
                   for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["done", "refused"], (round_, outcomes)
        assert admin.execute("SELECT count(*) FROM monitoring_console_users WHERE login = ANY(%s) AND role = 'admin' "
                             "AND disabled_at IS NULL", (logins,)).fetchone() == (1,)
        admin.execute("SELECT monitoring_console_disable_user(l) FROM unnest(%s::text[]) AS l", (logins,))
