"""The `pgalert` command: parse, call, print. Errors surface as click.ClickException."""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
from urllib.parse import urlsplit

import click
import psycopg

from dispatcher import db, logs
from dispatcher.inbound.settings import ServeSettings
from dispatcher.migrate import MigrationError, migrate, scheduler_summary
from dispatcher.providers import (
    ProviderConfigError,
    all_secrets,
    check_url,
    plain_http_allowed,
    providers_from_env,
)
from dispatcher.redact import redact
from dispatcher.retry import RetryPolicy
from dispatcher.settings import DEFAULT_PACING, Settings, default_dispatcher_id, parse_pacing

DATABASE_HELP = "PostgreSQL connection URL; when empty, libpq's PG* variables (PGHOST, PGDATABASE, ...) apply."


def database_option(function):
    return click.option("--database-url", envvar="DATABASE_URL", default="", show_envvar=True,
                        help=DATABASE_HELP)(function)


def connect_or_fail(url: str) -> psycopg.Connection:
    try:
        return db.connect(url)
    except psycopg.OperationalError as error:
        raise click.ClickException(f"cannot connect to PostgreSQL: {str(error).strip()}") from None


def check_database(url: str) -> None:
    """Refuse at start what retrying cannot mend: no such database or role, a wrong password, a malformed URL.
    A server that is down or restarting is another matter: the dispatcher waits for it."""
    try:
        db.connect(url).close()
    except psycopg.Error as error:
        if db.is_transient(error):
            logs.warning("database not reachable yet; waiting for it", error=redact_url(str(error).strip(), url))
            return
        raise click.ClickException(f"cannot use DATABASE_URL: {redact_url(str(error).strip(), url)}") from None


def redact_url(message: str, url: str) -> str:
    """An error about a connection string without the string's password (psycopg may quote the whole DSN)."""
    secrets = [url] if url else []
    try:
        if url and urlsplit(url).password:
            secrets.append(urlsplit(url).password)
    except ValueError:
        pass
    message = redact(message, secrets)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1[redacted]", message)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="pgalert")
def cli() -> None:
    """pgalert: Postgres-native alerting. Alerts are decided in SQL; this command migrates the database, runs
    the dispatcher that delivers them to PagerDuty, Opsgenie, Slack, Sentry and webhooks, and serves the HTTP
    side that hears back from them."""


@cli.command("migrate")
@database_option
@click.option("--check", is_flag=True,
              help="Change nothing: list what a migrate would apply and exit 1 if anything is pending "
                   "(for init containers and deploy pipelines), 0 if the database is up to date.")
@click.option("--superuser-script", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the SQL a superuser must run for pg_cron to run pgalert's jobs to this file (a comment "
                   "alone when nothing is needed) rather than print it.")
def migrate_command(database_url: str, check: bool, superuser_script: str | None) -> None:
    """Install or upgrade the schema: new migrations, then the changed files of current definitions.

    One transaction under an advisory lock: several at once are safe, a second run does nothing, and a
    failure leaves the database as it was. A migration edited after it was applied is refused. The SQL is
    the one shipped with this pgalert; `psql -f sql/install.psql` does the same without Python.

    It ends by saying how the scheduled jobs (rules, escalations, releases of held notifications) will run:
    under pg_cron, or, where pg_cron cannot run them (not loaded, not installed in this database, no rights on
    its schema, its runs failing), in `pgalert dispatch`; and then prints the SQL a superuser runs to give them
    to pg_cron."""
    with connect_or_fail(database_url) as conn:
        try:
            plan = migrate(conn, log=click.echo, check_only=check)
        except MigrationError as error:
            raise click.ClickException(str(error)) from None
        except psycopg.Error as error:
            raise click.ClickException(f"migration failed and was rolled back: {str(error).strip()}") from None
        if not check:
            summary, superuser_sql = scheduler_summary(conn, superuser_script)
    if check:
        for name in plan.migrations:
            click.echo(f"pending: migrations/{name}")
        for name in plan.definitions:
            click.echo(f"pending: {name}")
        if plan.pending:
            raise SystemExit(1)
        click.echo("database is up to date")
        return
    click.echo(f"{len(plan.migrations)} migration(s) and {len(plan.definitions)} definition file(s) applied"
               if plan.pending else "database is up to date")
    if superuser_script:
        with open(superuser_script, "w", encoding="utf-8") as script:
            script.write((superuser_sql or "-- nothing to do: pg_cron runs pgalert's scheduled jobs") + "\n")
    click.echo(summary)


@cli.command("dispatch")
@database_option
@click.option("--dispatcher-id", envvar="PGALERT_DISPATCHER_ID", default=default_dispatcher_id, show_envvar=True,
              help="Name recorded on every attempt. [default: host:pid]")
@click.option("--concurrency", envvar="PGALERT_CONCURRENCY", type=click.IntRange(1, 256), default=Settings.concurrency,
              show_default=True, show_envvar=True,
              help="Sends (HTTP or SMTP) in flight at once. A dispatcher holds at most twice as many claimed "
                   "deliveries, so the next sends are claimed while these go.")
@click.option("--batch-size", envvar="PGALERT_BATCH_SIZE", type=click.IntRange(1, 5000), default=Settings.batch_size,
              show_default=True, show_envvar=True, help="Deliveries claimed per query.")
@click.option("--lease-seconds", envvar="PGALERT_LEASE_SECONDS", type=click.FloatRange(5),
              default=Settings.lease_seconds, show_default=True, show_envvar=True,
              help="How long a claim lasts; after it another dispatcher takes the delivery over.")
@click.option("--poll-seconds", envvar="PGALERT_POLL_SECONDS", type=click.FloatRange(0.05),
              default=Settings.poll_seconds,
              show_default=True, show_envvar=True, help="Look for work at least this often, NOTIFY or not.")
@click.option("--http-timeout", envvar="PGALERT_HTTP_TIMEOUT", type=click.FloatRange(0.1),
              default=Settings.http_timeout,
              show_default=True, show_envvar=True, help="Seconds a send may take, connecting included.")
@click.option("--max-attempts", envvar="PGALERT_MAX_ATTEMPTS", type=click.IntRange(1), default=RetryPolicy.max_attempts,
              show_default=True, show_envvar=True, help="Attempts before a delivery is failed.")
@click.option("--backoff-base", envvar="PGALERT_BACKOFF_BASE", type=click.FloatRange(0.0),
              default=RetryPolicy.base_seconds,
              show_default=True, show_envvar=True, help="First retry delay in seconds; doubles, with jitter.")
@click.option("--backoff-cap", envvar="PGALERT_BACKOFF_CAP", type=click.FloatRange(0.0),
              default=RetryPolicy.cap_seconds,
              show_default=True, show_envvar=True, help="Longest retry delay in seconds.")
@click.option("--pacing", envvar="PGALERT_PACING", default=DEFAULT_PACING, show_default=True, show_envvar=True,
              help="Per-provider send rate shared by all dispatchers, PROVIDER=COUNT/SECONDS[:BURST],...; 'off'.")
@click.option("--shutdown-seconds", envvar="PGALERT_SHUTDOWN_SECONDS", type=click.FloatRange(0.5, 60),
              default=Settings.shutdown_seconds,
              show_default=True, show_envvar=True, help="On SIGTERM, how long in-flight sends may finish.")
@click.option("--metrics-port", envvar="PGALERT_METRICS_PORT", type=click.IntRange(0, 65535), default=None,
              show_envvar=True, help="Serve Prometheus /metrics and /healthz on this port.")
@click.option("--metrics-host", envvar="PGALERT_METRICS_HOST", default=Settings.metrics_host, show_default=True,
              show_envvar=True, help="Address for the metrics server.")
@click.option("--health-checks/--no-health-checks", envvar="PGALERT_HEALTH_CHECKS", default=True, show_default=True,
              show_envvar=True, help="Run the due checks of monitoring_health_checks (PRODUCTION_URL adds one).")
@click.option("--heartbeat-url", envvar="PGALERT_HEARTBEAT_URL", default="", show_envvar=True,
              help="A dead man's switch (healthchecks.io, Cronitor, a PagerDuty heartbeat): pinged while this "
                   "dispatcher could page (claims turn, the database answers, pgalert's scheduled jobs run), so the "
                   "outside service pages when pgalert cannot. Treated as a secret.")
@click.option("--heartbeat-seconds", envvar="PGALERT_HEARTBEAT_SECONDS", type=click.FloatRange(1, 3600),
              default=Settings.heartbeat_seconds, show_default=True, show_envvar=True,
              help="Seconds between heartbeat pings; set the outside check's period to this and its grace to twice it.")
@click.option("--scheduler", envvar="PGALERT_SCHEDULER", type=click.Choice(["auto", "pg_cron", "dispatcher"]),
              default=Settings.scheduler, show_default=True, show_envvar=True,
              help="Who runs pgalert's scheduled jobs (rules, escalations, releases of held notifications): pg_cron; "
                   "the dispatchers, each tick once across all of them (for a PostgreSQL without pg_cron); or "
                   "auto, pg_cron while it can run them and the dispatchers when it cannot "
                   "(monitoring_scheduler_diagnosis()).")
@click.option("--log-format", envvar="PGALERT_LOG_FORMAT", type=click.Choice(["text", "json"]), default="text",
              show_default=True, show_envvar=True, help="One line per event, as key=value text or JSON.")
@click.option("--log-level", envvar="PGALERT_LOG_LEVEL", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True, show_envvar=True, help="The least important events to log.")
def dispatch_command(database_url: str, dispatcher_id: str, concurrency: int, batch_size: int, lease_seconds: float,
                     poll_seconds: float, http_timeout: float, max_attempts: int, backoff_base: float,
                     backoff_cap: float, pacing: str, shutdown_seconds: float, metrics_port: int | None,
                     metrics_host: str, health_checks: bool, heartbeat_url: str, heartbeat_seconds: float,
                     scheduler: str, log_format: str, log_level: str) -> None:
    """Deliver alerts until SIGTERM: LISTEN for work, claim it with SKIP LOCKED, send, record every attempt.

    Providers are configured only from the environment: PAGERDUTY_INTEGRATION_KEY (PAGERDUTY_EVENTS_URL),
    OPSGENIE_API_KEY (OPSGENIE_API_URL), JSM_API_KEY (JSM_API_URL), SLACK_WEBHOOK_URL, TEAMS_WEBHOOK_URL,
    SENTRY_DSN or SENTRY_WEBHOOK_URL,
    PGALERT_WEBHOOK_URL with PGALERT_WEBHOOK_SECRET, EMAIL_SMTP_URL with EMAIL_FROM and EMAIL_TO (and
    EMAIL_SMTP_USERNAME, EMAIL_SMTP_PASSWORD). More channels (a Slack channel or PagerDuty service per
    team) are rows of monitoring_providers that name their secrets as env:NAME, read from this environment. A
    provider or channel left unset has its deliveries skipped, visibly. Run as many dispatchers as you like
    against one database."""
    from dispatcher.metrics import Metrics, serve
    from dispatcher.worker import Dispatcher

    try:
        providers = providers_from_env(os.environ)
        paces = parse_pacing(pacing)
    except (ProviderConfigError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    longest_send = Settings.connect_timeout + http_timeout
    if lease_seconds <= longest_send + 1:
        raise click.ClickException(
            f"--lease-seconds ({lease_seconds:g}) must exceed the longest send ({longest_send:g}s: connect "
            f"{Settings.connect_timeout:g}s + --http-timeout {http_timeout:g}s) by at least a second, or a send "
            "still in flight would be claimed again")
    settings = Settings(
        database_url=database_url, dispatcher_id=dispatcher_id, concurrency=concurrency, batch_size=batch_size,
        lease_seconds=lease_seconds, poll_seconds=poll_seconds, http_timeout=http_timeout,
        shutdown_seconds=shutdown_seconds, retry=RetryPolicy(max_attempts, backoff_base, backoff_cap),
        pacing=paces, metrics_host=metrics_host, metrics_port=metrics_port, health_checks=health_checks,
        production_url=os.environ.get("PRODUCTION_URL", "").strip(), heartbeat_url=heartbeat_url.strip(),
        heartbeat_seconds=heartbeat_seconds, scheduler=scheduler,
    )
    if settings.heartbeat_url:
        try:
            check_url("--heartbeat-url", settings.heartbeat_url, plain_http_allowed(os.environ))
        except ProviderConfigError as error:
            raise click.ClickException(str(error)) from None
    secrets = all_secrets(providers) + tuple(s for s in (settings.production_url, settings.heartbeat_url) if s)
    logs.configure(log_format, log_level, secrets)
    metrics = Metrics()
    if metrics_port is not None:
        serve(metrics, metrics_host, metrics_port, stale_after=max(poll_seconds * 3, 15))
        logs.info("metrics listening", address=f"{metrics_host}:{metrics_port}")
    check_database(database_url)
    dispatcher = Dispatcher(settings, providers, metrics, env=os.environ)
    dispatcher.install_signal_handlers()
    code = dispatcher.run()
    # A health probe stuck in a hung socket would hold interpreter exit (the probes' executor joins its
    # threads), and unfinished sends have already been released, so leave without waiting.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def command_sql(name: str) -> str:
    """A named query of dispatcher/commands.sql."""
    return db.named_queries(db.COMMANDS_FILE)[name]


def _secret_list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@cli.command("serve")
@database_option
@click.option("--host", envvar="PGALERT_SERVE_HOST", default="127.0.0.1", show_default=True, show_envvar=True,
              help="Address to listen on (put TLS in front: a reverse proxy or load balancer).")
@click.option("--port", envvar="PGALERT_SERVE_PORT", type=click.IntRange(0, 65535), default=8080, show_default=True,
              show_envvar=True, help="Port to listen on.")
@click.option("--max-body-bytes", envvar="PGALERT_SERVE_MAX_BODY_BYTES", type=click.IntRange(1024),
              default=ServeSettings.max_body_bytes,
              show_default=True, show_envvar=True, help="Larger requests are refused (413) before they are read.")
@click.option("--body-timeout", envvar="PGALERT_SERVE_BODY_TIMEOUT", type=click.FloatRange(0.1, 300),
              default=ServeSettings.body_timeout,
              show_default=True, show_envvar=True,
              help="Seconds a request body may take to arrive; a slower one is refused (408).")
@click.option("--alertmanager-default-severity", envvar="PGALERT_ALERTMANAGER_DEFAULT_SEVERITY",
              type=click.Choice(["critical", "warning", "info"]), default=ServeSettings.alertmanager_default_severity,
              show_default=True,
              show_envvar=True, help="Severity of an Alertmanager alert whose severity label pgalert does not know.")
@click.option("--pool-size", envvar="PGALERT_SERVE_POOL_SIZE", type=click.IntRange(1, 100),
              default=ServeSettings.pool_size,
              show_default=True, show_envvar=True, help="Database connections at most.")
@click.option("--console/--no-console", envvar="PGALERT_CONSOLE", default=ServeSettings.console, show_default=True,
              show_envvar=True, help="The web console under /console (/ redirects to it). Its login must also hold "
                                     "monitoring_console.")
@click.option("--console-session-hours", envvar="PGALERT_CONSOLE_SESSION_HOURS", type=click.FloatRange(0.1, 720),
              default=ServeSettings.console_session_hours, show_default=True, show_envvar=True,
              help="How long a console sign-in lasts.")
@click.option("--console-auth-header", envvar="PGALERT_CONSOLE_AUTH_HEADER", default="", show_envvar=True,
              help="Single sign-on: the header in which a trusted reverse proxy (oauth2-proxy, ...) names the person, "
                   "e.g. X-Forwarded-Email; believed only from --console-trusted-proxies.")
@click.option("--console-trusted-proxies", envvar="PGALERT_CONSOLE_TRUSTED_PROXIES", default="", show_envvar=True,
              help="The proxy's addresses or networks, comma-separated, e.g. 10.0.0.5,10.1.0.0/16; matched "
                   "against the connection's own address, never X-Forwarded-For.")
@click.option("--log-format", envvar="PGALERT_LOG_FORMAT", type=click.Choice(["text", "json"]), default="text",
              show_default=True, show_envvar=True, help="One line per event, as key=value text or JSON.")
@click.option("--log-level", envvar="PGALERT_LOG_LEVEL", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True, show_envvar=True, help="The least important events to log.")
def serve_command(database_url: str, host: str, port: int, max_body_bytes: int, body_timeout: float,
                  alertmanager_default_severity: str, pool_size: int, console: bool, console_session_hours: float,
                  console_auth_header: str, console_trusted_proxies: str, log_format: str, log_level: str) -> None:
    """Hear what responders do at PagerDuty, Opsgenie, Slack and on their phones, and take alerts over HTTP.

    \b
    POST /v1/alerts         generic API (bearer token from `pgalert api-client create`)
    POST /v1/alertmanager   Alertmanager / Grafana webhook (bearer token)
    POST /v1/pagerduty      PagerDuty webhooks v3   PAGERDUTY_WEBHOOK_SECRETS (comma-separated, for rotation)
                            with PAGERDUTY_API_TOKEN (read-only) to map incidents whose payload lacks the key
    POST /v1/opsgenie       Opsgenie webhook        OPSGENIE_WEBHOOK_TOKEN
    POST /v1/slack/actions  Slack buttons           SLACK_SIGNING_SECRET
    POST /v1/twilio/sms, /v1/twilio/voice, /v1/twilio/status
                            texts, keypresses and status callbacks from Twilio   TWILIO_AUTH_TOKEN
                            (PGALERT_PUBLIC_URL: this service's URL as Twilio calls it; unset, they get 403)
    POST /v1/ntfy/ack/TOKEN a push's Acknowledge button   PGALERT_ACTION_KEY (the dispatchers' too)
    GET  /console/          the web console (people made with `pgalert user create`)
    GET  /healthz, /metrics, /openapi.json

    A provider endpoint whose secret is not set answers 404. Connect as a login holding monitoring_inbound
    (the inbound functions and nothing else) and, for the console, monitoring_console (what a reader reads,
    and the console's functions, which act only for a signed-in person, within their role). Run as many as
    you like behind a load balancer."""
    import uvicorn

    from dispatcher.inbound.app import Inbound
    from dispatcher.inbound.proxies import with_tcp_peer

    env = os.environ
    settings = ServeSettings(
        database_url=database_url, max_body_bytes=max_body_bytes, body_timeout=body_timeout,
        pagerduty_webhook_secrets=_secret_list(env.get("PAGERDUTY_WEBHOOK_SECRETS", "")),
        pagerduty_api_token=env.get("PAGERDUTY_API_TOKEN", "").strip(),
        pagerduty_api_url=env.get("PAGERDUTY_API_URL", "").strip() or ServeSettings.pagerduty_api_url,
        slack_signing_secret=env.get("SLACK_SIGNING_SECRET", "").strip(),
        slack_response_url_prefix=(env.get("SLACK_RESPONSE_URL_PREFIX", "").strip()
                                   or ServeSettings.slack_response_url_prefix),
        opsgenie_webhook_token=env.get("OPSGENIE_WEBHOOK_TOKEN", "").strip(),
        alertmanager_default_severity=alertmanager_default_severity, pool_size=pool_size,
        console=console, console_session_hours=console_session_hours, console_auth_header=console_auth_header.strip(),
        console_trusted_proxies=console_trusted_proxies,
        twilio_auth_token=env.get("TWILIO_AUTH_TOKEN", "").strip(),
        public_url=env.get("PGALERT_PUBLIC_URL", "").strip().rstrip("/"),
        action_key=env.get("PGALERT_ACTION_KEY", "").strip(),
    )
    if console_auth_header and not console_trusted_proxies:
        raise click.ClickException("--console-auth-header needs --console-trusted-proxies: anyone could send the "
                                   "header otherwise")
    try:
        from dispatcher.console.auth import parse_networks

        parse_networks(console_trusted_proxies)
    except ValueError as error:
        raise click.ClickException(f"--console-trusted-proxies: {error}") from None
    secrets = settings.secrets() + ((database_url,) if database_url else ())
    logs.configure(log_format, log_level, secrets)
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn's own lines in the same format, secrets redacted
        logging.getLogger(name).handlers[:] = logs.LOGGER.handlers
        logging.getLogger(name).propagate = False
    check_database(database_url)
    inbound = Inbound(settings)
    logs.info("serve listening", address=f"{host}:{port}")
    # uvicorn shuts down gracefully on SIGTERM or SIGINT, then raises the signal again for the handler it
    # found installed: with this one the process then exits 0, as the dispatcher does
    for shutdown_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(shutdown_signal, lambda *_: None)
    # uvicorn's own X-Forwarded-* rewriting is off: with_tcp_peer does the same (uvicorn's variable and default)
    # after keeping the socket's peer, which alone decides whether the single sign-on proxy is speaking
    app = with_tcp_peer(inbound.app(), env.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"))
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                                           lifespan="on", timeout_graceful_shutdown=5, server_header=False,
                                           proxy_headers=False))
    # open console pages hold their event streams: told of the shutdown, they end at once and reconnect
    # elsewhere, rather than holding the process for the graceful timeout
    inbound.shutting_down = lambda: server.should_exit
    server.run()


@cli.group("api-client")
def api_client_group() -> None:
    """Tokens for the tools that post alerts to `pgalert serve` (the generic API and Alertmanager)."""


@api_client_group.command("create")
@database_option
@click.argument("name")
def api_client_create(database_url: str, name: str) -> None:
    """Make a token for client NAME and print it once: only its SHA-256 is stored. Needs monitoring_admin."""
    from dispatcher.inbound.verify import new_token, token_sha256

    token = new_token()
    with connect_or_fail(database_url) as conn:
        try:
            conn.execute(command_sql("create_api_client"), {"name": name, "token_sha256": token_sha256(token)})
            conn.commit()
        except psycopg.Error as error:
            raise click.ClickException(str(error).strip().splitlines()[0]) from None
    click.echo(token)
    click.echo(f"created API client {name}: the token above is shown only now; send it as "
               "'Authorization: Bearer <token>'", err=True)


@api_client_group.command("revoke")
@database_option
@click.argument("name")
def api_client_revoke(database_url: str, name: str) -> None:
    """Stop client NAME's token working, at once. The client stays listed, revoked, for history."""
    with connect_or_fail(database_url) as conn:
        try:
            revoked = conn.execute(command_sql("revoke_api_client"), {"name": name}).fetchone()[0]
            conn.commit()
        except psycopg.Error as error:
            raise click.ClickException(str(error).strip().splitlines()[0]) from None
    if not revoked:
        raise click.ClickException(f"no active API client is named {name}")
    click.echo(f"revoked API client {name}")


@api_client_group.command("list")
@database_option
@click.option("--format", "output_format", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True, help="table for people; json or csv for tools.")
def api_client_list(database_url: str, output_format: str) -> None:
    """The API clients, active and revoked (never their tokens)."""
    from dispatcher.report import render

    with connect_or_fail(database_url) as conn:
        try:
            cursor = conn.execute(command_sql("list_api_clients"))
        except psycopg.Error as error:
            raise click.ClickException(str(error).strip().splitlines()[0]) from None
        rows = cursor.fetchall()
    click.echo(render(["name", "created_at", "created_by", "revoked_at"], rows, output_format), nl=False)


@cli.group("user")
def user_group() -> None:
    """The people who may sign in to the web console, and what each may do there (needs monitoring_admin)."""


def _read_password(password_stdin: bool) -> str:
    from dispatcher.console.auth import PASSWORD_MIN

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    if len(password) < PASSWORD_MIN:
        raise click.ClickException(f"a password needs at least {PASSWORD_MIN} characters")
    return password


@user_group.command("create")
@database_option
@click.argument("login")
@click.option("--name", "display_name", help="As shown on what they do (acknowledged by ...). [default: LOGIN]")
@click.option("--role", type=click.Choice(["viewer", "responder", "admin"]), default="responder", show_default=True,
              help="viewer reads; responder also acknowledges, resolves, reopens and silences; admin also more.")
@click.option("--person", help="Their name in monitoring_people (on-call), if they are on a rotation.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.option("--sso-only", is_flag=True, help="No password: they sign in through the trusted proxy only.")
def user_create(database_url: str, login: str, display_name: str | None, role: str, person: str | None,
                password_stdin: bool, sso_only: bool) -> None:
    """Make (or change) console user LOGIN, asking for a password; their open sessions end."""
    from dispatcher.console.auth import hash_password

    password_hash = None if sso_only else hash_password(_read_password(password_stdin))
    _save_user(database_url, login, display_name or login, role, password_hash, person)
    click.echo(f"console user {login.lower()} is a {role}")


@user_group.command("passwd")
@database_option
@click.argument("login")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
def user_passwd(database_url: str, login: str, password_stdin: bool) -> None:
    """Set console user LOGIN's password; their open sessions end."""
    from dispatcher.console.auth import hash_password

    with connect_or_fail(database_url) as conn:
        row = conn.execute(command_sql("console_user"), {"login": login.lower()}).fetchone()
    if row is None:
        raise click.ClickException(f"no console user is named {login.lower()}")
    _save_user(database_url, login, row[0], row[1], hash_password(_read_password(password_stdin)), None)
    click.echo(f"password of {login.lower()} changed")


@user_group.command("disable")
@database_option
@click.argument("login")
def user_disable(database_url: str, login: str) -> None:
    """Console user LOGIN can no longer sign in; their sessions end now (`user create` enables them again)."""
    with connect_or_fail(database_url) as conn:
        try:
            done = conn.execute(command_sql("disable_console_user"), {"login": login}).fetchone()[0]
            conn.commit()
        except psycopg.Error as error:
            raise click.ClickException(str(error).strip().splitlines()[0]) from None
    if not done:
        raise click.ClickException(f"no enabled console user is named {login.lower()}")
    click.echo(f"disabled console user {login.lower()}")


@user_group.command("list")
@database_option
@click.option("--format", "output_format", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True, help="table for people; json or csv for tools.")
def user_list(database_url: str, output_format: str) -> None:
    """The console's users and their roles (never a password hash)."""
    from dispatcher.report import render

    with connect_or_fail(database_url) as conn:
        try:
            rows = conn.execute(command_sql("list_console_users")).fetchall()
        except psycopg.Error as error:
            raise click.ClickException(str(error).strip().splitlines()[0]) from None
    click.echo(render(["login", "display_name", "role", "created_at", "disabled_at"], rows, output_format), nl=False)


def _save_user(database_url: str, login: str, display_name: str, role: str, password_hash: str | None,
               person: str | None) -> None:
    with connect_or_fail(database_url) as conn:
        try:
            conn.execute(command_sql("save_console_user"), {"login": login, "display_name": display_name, "role": role,
                                                            "password_hash": password_hash, "person": person})
            conn.commit()
        except psycopg.Error as error:
            raise click.ClickException(str(error).strip().splitlines()[0]) from None


@cli.group("silence")
def silence_group() -> None:
    """Hold the notifications of matching alerts for a while ("we are deploying, don't page")."""


@silence_group.command("add")
@database_option
@click.option("--match", "matchers", multiple=True, required=True, metavar="FIELD OP VALUE",
              help="e.g. alert_type=api_response_degradation, labels.env=~prod|staging, severity!=info; "
                   "every one must match. Repeat for more.")
@click.option("--for", "duration", default=None, help="How long, from the start: 2h, 90m, 1d12h.")
@click.option("--until", "until", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"]), default=None,
              help="Or until this time (with its UTC offset, e.g. 2026-12-01T06:00:00+00:00).")
@click.option("--comment", required=True, help="Why: shown to whoever wonders why a page did not go out.")
def silence_add(database_url: str, matchers: tuple[str, ...], duration: str | None, until, comment: str) -> None:
    """Silence alerts from now on; prints the silence id. Needs monitoring_admin.

    A silenced alert is still stored, deduplicated and counted; when the silence ends and it is still open, it
    is notified then. A resolve of an alert whose page already went out is never held."""
    import datetime as dt

    from psycopg.types.json import Jsonb

    from dispatcher.matchers import parse_duration, parse_matcher

    if (duration is None) == (until is None):
        raise click.UsageError("give --for or --until (one of them)")
    try:
        parsed = [parse_matcher(m) for m in matchers]
        ends_at = until or dt.datetime.now(dt.UTC) + parse_duration(duration)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    with connect_or_fail(database_url) as conn:
        try:
            silence_id = conn.execute(command_sql("create_silence"),
                                      {"matchers": Jsonb(parsed), "ends_at": ends_at, "comment": comment}).fetchone()[0]
            conn.commit()
        except psycopg.Error as error:
            raise click.ClickException(str(error).strip().splitlines()[0]) from None
    click.echo(silence_id)


@silence_group.command("list")
@database_option
@click.option("--all", "show_all", is_flag=True, help="Include ended and expired silences (history).")
@click.option("--format", "output_format", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True, help="table for people; json or csv for tools.")
def silence_list(database_url: str, show_all: bool, output_format: str) -> None:
    """Active silences (and with --all, past ones), with what each holds now. monitoring_reader is enough."""
    from dispatcher.report import render

    with connect_or_fail(database_url) as conn:
        try:
            cursor = conn.execute(command_sql("list_silences"), {"show_all": show_all})
        except psycopg.Error as error:
            raise click.ClickException(str(error).strip().splitlines()[0]) from None
        columns = [c.name for c in cursor.description]
        rows = cursor.fetchall()
    click.echo(render(columns, rows, output_format), nl=False)


@silence_group.command("expire")
@database_option
@click.argument("silence_id", type=int)
def silence_expire(database_url: str, silence_id: int) -> None:
    """End silence SILENCE_ID now; the open alerts it held (and nothing else holds) are notified at once."""
    with connect_or_fail(database_url) as conn:
        try:
            expired = conn.execute(command_sql("expire_silence"), {"silence_id": silence_id}).fetchone()[0]
            conn.commit()
        except psycopg.Error as error:
            raise click.ClickException(str(error).strip().splitlines()[0]) from None
    if not expired:
        raise click.ClickException(f"silence {silence_id} does not exist or has already ended")
    click.echo(f"expired silence {silence_id}")


@cli.command("sla")
@database_option
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=24, show_default=True,
              help="Window: alerts detected in the last HOURS.")
@click.option("--by", "dimension", type=click.Choice(["alert_type", "severity", "provider"]), default=None,
              help="Break the figures down by this dimension instead of the overall summary.")
@click.option("--format", "output_format", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True, help="table for people; json or csv for tools.")
def sla_command(database_url: str, hours: float, dimension: str | None, output_format: str) -> None:
    """Show MTTD, delivery time, MTTA, MTTR, false-positive rate and provider success against their targets.

    Reads monitoring_get_sla_summary (or monitoring_get_sla_breakdown with --by); monitoring_reader is enough."""
    from dispatcher.report import render

    with connect_or_fail(database_url) as conn:
        try:
            cursor = conn.execute(command_sql("sla_breakdown" if dimension else "sla_summary"),
                                  {"dimension": dimension, "hours": hours})
        except psycopg.Error as error:
            raise click.ClickException(str(error).strip()) from None
        columns = [c.name for c in cursor.description]
        rows = cursor.fetchall()
    click.echo(render(columns, rows, output_format), nl=False)


def _run_command(database_url: str, sql: str, params: dict) -> list[tuple]:
    """One command of commands.sql as the login given, committed; a database error becomes its first line."""
    with connect_or_fail(database_url) as conn:
        try:
            rows = conn.execute(sql, params).fetchall()
            conn.commit()
        except psycopg.Error as error:
            raise click.ClickException(str(error).strip().splitlines()[0]) from None
    return rows


@cli.group("contact")
def contact_group() -> None:
    """People's contact methods for direct paging (SMS, voice, push, email, Slack), verified by a code.

    A method gets nothing until verified: add it, send it a code, and type back the code the person received.
    Needs monitoring_admin."""


@contact_group.command("add")
@database_option
@click.argument("person")
@click.argument("kind", type=click.Choice(["sms", "voice", "push", "email", "slack"]))
@click.argument("address")
@click.option("--after", "delays", multiple=True, metavar="DELAY",
              help="Also add a notification rule using it, DELAY after the person is paged (e.g. '0', '2 minutes'); "
                   "repeatable.")
def contact_add(database_url: str, person: str, kind: str, address: str, delays: tuple[str, ...]) -> None:
    """Add a contact method for PERSON: sms or voice take an E.164 number (+14155550123), push an ntfy topic,
    email an address, slack a member id. Prints its id; it gets nothing until verified."""
    [(method_id,)] = _run_command(database_url, command_sql("add_contact_method"),
                                  {"person": person, "kind": kind, "address": address})
    for delay in delays:
        _run_command(database_url, command_sql("add_notification_rule"), {"method_id": method_id, "delay": delay})
    click.echo(method_id)
    click.echo(f"added {kind} {address} for {person}; send it a code: pgalert contact send-code {method_id}", err=True)


@contact_group.command("send-code")
@database_option
@click.argument("method_id", type=int)
def contact_send_code(database_url: str, method_id: int) -> None:
    """Send a 6-digit verification code to contact method METHOD_ID (valid 15 minutes, at most one a minute)."""
    [(expires_at,)] = _run_command(database_url, command_sql("send_verification_code"), {"method_id": method_id})
    click.echo(f"a code is on its way to contact method {method_id}; it expires at {expires_at:%Y-%m-%d %H:%M:%S %Z}")


@contact_group.command("verify")
@database_option
@click.argument("method_id", type=int)
@click.argument("code")
def contact_verify(database_url: str, method_id: int, code: str) -> None:
    """Confirm contact method METHOD_ID with the CODE its owner received; exits 1 on a wrong code."""
    # the try is committed first, and judged after: a try is never judged in the transaction that made it
    _run_command(database_url, command_sql("verify_contact_method"), {"method_id": method_id, "code": code})
    [(verified,)] = _run_command(database_url, command_sql("contact_method_verified"), {"method_id": method_id})
    if not verified:
        raise click.ClickException(f"wrong code for contact method {method_id} (5 wrong tries end the code)")
    click.echo(f"contact method {method_id} is verified")


@contact_group.command("list")
@database_option
@click.option("--person", help="Only this person's methods.")
@click.option("--format", "output_format", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True, help="table for people; json or csv for tools.")
def contact_list(database_url: str, person: str | None, output_format: str) -> None:
    """Contact methods, whether each is verified and enabled, when its number texted STOP (opted_out_at: it gets
    nothing until START, and its rules are skipped on a page), and the delays of the rules that use it."""
    from dispatcher.report import render

    rows = _run_command(database_url, command_sql("list_contact_methods"), {"person": person})
    columns = ["id", "person", "kind", "address", "enabled", "verified_at", "opted_out_at", "rule_delays"]
    click.echo(render(columns, rows, output_format), nl=False)


@cli.group("page")
def page_group() -> None:
    """Direct paging of people by their notification rules."""


@page_group.command("test")
@database_option
@click.argument("person")
def page_test(database_url: str, person: str) -> None:
    """Send PERSON a test page through every verified method of their notification rules at once, and print
    what was queued for each (the dispatchers send them; `pgalert contact list` shows the methods)."""
    from dispatcher.report import render

    [(alert_id,)] = _run_command(database_url, command_sql("test_page"), {"person": person})
    rows = _run_command(database_url, command_sql("test_page_messages"), {"alert_id": alert_id})
    click.echo(f"test page for {person}: alert {alert_id}", err=True)
    click.echo(render(["kind", "address", "channel", "status", "last_error"], rows, "table"), nl=False)


@cli.command("oncall")
@database_option
@click.option("--weeks", type=click.IntRange(1, 52), default=4, show_default=True, help="How far ahead to show.")
@click.option("--schedule", "schedule_name", default=None, help="One schedule only (default: every schedule).")
@click.option("--format", "output_format", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True, help="table for people; json or csv for tools.")
def oncall_command(database_url: str, weeks: int, schedule_name: str | None, output_format: str) -> None:
    """Show who is on call now and the shifts (and overrides) of the coming weeks, for each schedule."""
    from dispatcher.report import render

    with connect_or_fail(database_url) as conn:
        names = [schedule_name] if schedule_name else [
            n for (n,) in conn.execute(command_sql("oncall_schedules")).fetchall()]
        rows = []
        try:
            for name in names:
                now = conn.execute(command_sql("who_is_on_call"), {"schedule": name}).fetchone()
                rows.append((name, "now", now[0], now[1], None, now[2]))
                rows += [(name, "shift", person, override, starts, ends) for starts, ends, person, override in
                         conn.execute(command_sql("oncall_timeline"), {"schedule": name, "days": weeks * 7}).fetchall()]
        except psycopg.Error as error:
            raise click.ClickException(str(error).strip()) from None
    columns = ["schedule", "kind", "person", "override", "starts_at", "ends_at"]
    click.echo(render(columns, rows, output_format), nl=False)


def main() -> None:
    cli(prog_name="pgalert")


if __name__ == "__main__":
    main()
