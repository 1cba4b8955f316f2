"""The console's HTTP side, mounted by `pgalert serve` under /console: pages rendered on the server (Jinja2),
made live by htmx and one Server-Sent Events stream per page. Reading needs a session; every change is a
monitoring_console_* function given the session's token, so the database checks the person's role."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import psycopg
from jinja2 import Environment, FileSystemLoader, select_autoescape
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dispatcher import __version__, logs
from dispatcher.console import auth, views
from dispatcher.console.feed import Feed
from dispatcher.db import named_queries
from dispatcher.inbound.app import Refused, read_body
from dispatcher.inbound.proxies import tcp_peer
from dispatcher.inbound.settings import ServeSettings
from dispatcher.matchers import parse_duration
from dispatcher.request_values import ID_MAX, row_id, whole_number

HERE = Path(__file__).parent
QUERIES_FILE = HERE / "queries.sql"
BODY_MAX = 64 * 1024  # a console form is far smaller; --max-body-bytes lowers it further
FORM_TYPE = "application/x-www-form-urlencoded"  # what the console's forms and htmx send
SLA_HOURS_MAX = 24 * 366  # the SLA page's windows go back a year at most
KEEPALIVE_SECONDS = 15.0
STREAM_TICK_SECONDS = 1.0  # how soon a stream notices that serve is shutting down
# no inline script, no eval, nothing from another origin; htmx and the console's script are files of ours
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY", "Cache-Control": "no-store"}


@dataclass(frozen=True)
class User:
    login: str
    display_name: str
    role: str
    token: str
    expires_at: dt.datetime

    @property
    def can_act(self) -> bool:
        return self.role in ("responder", "admin")

    @property
    def csrf(self) -> str:
        return auth.csrf_token(self.token)


class SignInRequired(Exception):
    pass


class IdConvertor(Convertor):
    """A row's id in a path: ASCII digits. One above a bigint's largest (however long) is refused by
    Console.page with a reason, so the database never sees it."""

    regex = "[0-9]+"

    def convert(self, value: str) -> int:
        return int(value) if len(value) <= 19 else ID_MAX + 1  # int() refuses 4,301 digits and more

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", IdConvertor())


class SignInGate:
    """argon2 is meant to cost: deriving it on serve's one event loop stalled alert intake and webhooks while
    strangers signed in. Derivations run on threads (libargon2 releases the GIL), a few at a time, with a short
    queue behind them; a sign-in that finds the queue full is turned away at once, before the database counts it."""

    def __init__(self, running: int, waiting: int):
        self.running = asyncio.Semaphore(running)
        self.capacity = running + waiting
        self.admitted = 0

    def admit(self) -> bool:
        if self.admitted >= self.capacity:
            return False
        self.admitted += 1
        return True

    def leave(self) -> None:
        self.admitted -= 1

    async def derive(self, argon2_settings: str, hash_length: int, password: str) -> str:
        async with self.running:
            return await asyncio.to_thread(auth.derive_hash, argon2_settings, hash_length, password)


class Console:
    def __init__(self, settings: ServeSettings, pool: AsyncConnectionPool,
                 shutting_down: Callable[[], bool] = lambda: False):
        self.settings = settings
        self.pool = pool
        self.shutting_down = shutting_down
        self.queries = named_queries(QUERIES_FILE)
        self.feed = Feed(settings.database_url, QUERIES_FILE)
        self.proxies = auth.parse_networks(settings.console_trusted_proxies)
        # one derivation per core but one, so intake keeps a core, and as many waiting as can finish in seconds
        self.sign_ins = SignInGate(running=max(1, (os.cpu_count() or 2) - 1), waiting=8)
        # login -> the token of the session last opened for whom the proxy vouched: console users only, so few
        self.proxy_sessions: dict[str, str] = {}
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                     autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
        self.templates.globals.update(version=__version__)

    def routes(self) -> list:
        return [
            Route("/", lambda request: RedirectResponse("/console/", 307)),
            Mount("/console/static", StaticFiles(directory=HERE / "static"), name="static"),
            Route("/console/login", self.page(self.login_form, signed_in=False), methods=["GET"]),
            Route("/console/login", self.page(self.login, signed_in=False), methods=["POST"]),
            Route("/console/logout", self.page(self.logout, change=True), methods=["POST"]),
            Route("/console/", self.page(self.alerts), methods=["GET"]),
            Route("/console/alerts/rows", self.page(self.alert_rows), methods=["GET"]),
            Route("/console/alerts/bulk", self.page(self.bulk, change=True), methods=["POST"]),
            Route("/console/alerts/{alert_id:id}", self.page(self.alert), methods=["GET"]),
            Route("/console/alerts/{alert_id:id}/{action:str}", self.page(self.act, change=True), methods=["POST"]),
            Route("/console/silences", self.page(self.silences), methods=["GET"]),
            Route("/console/silences/new", self.page(self.silence_form), methods=["GET"]),
            Route("/console/silences/preview", self.page(self.silence_preview, change=True), methods=["POST"]),
            Route("/console/silences", self.page(self.create_silence, change=True), methods=["POST"]),
            Route("/console/silences/{silence_id:id}/expire", self.page(self.expire_silence, change=True),
                  methods=["POST"]),
            Route("/console/events", self.page(self.events), methods=["GET"]),
            Route("/console/silences/{silence_id:id}/extend", self.page(self.extend_silence, change=True),
                  methods=["POST"]),
            Route("/console/windows", self.page(self.windows), methods=["GET"]),
            Route("/console/windows", self.page(self.save_window, change=True), methods=["POST"]),
            Route("/console/windows/{name:str}/enabled", self.page(self.set_window_enabled, change=True),
                  methods=["POST"]),
            Route("/console/users", self.page(self.users), methods=["GET"]),
            Route("/console/users", self.page(self.save_user, change=True), methods=["POST"]),
            Route("/console/users/{login:str}/disable", self.page(self.disable_user, change=True), methods=["POST"]),
            Route("/console/oncall", self.page(self.oncall), methods=["GET"]),
            Route("/console/oncall/override", self.page(self.add_override, change=True), methods=["POST"]),
            Route("/console/oncall/test-page", self.page(self.test_page, change=True), methods=["POST"]),
            Route("/console/sla", self.page(self.sla), methods=["GET"]),
            Route("/console/sla.csv", self.page(self.sla_csv), methods=["GET"]),
            Route("/console/channels", self.page(self.channels), methods=["GET"]),
            Route("/console/channels/{provider:str}", self.page(self.set_channel, change=True), methods=["POST"]),
            Route("/console/rules", self.page(self.rules), methods=["GET"]),
            Route("/console/rules/{rule:str}/enabled", self.page(self.set_rule_enabled, change=True),
                  methods=["POST"]),
            Route("/console/rules/{rule:str}/backtest", self.page(self.backtest), methods=["GET"]),
        ]

    # --- the frame of every page: who is signed in, CSRF, errors -------------------------------------------
    def page(self, handler: Callable[..., Awaitable[Response]], *, signed_in: bool = True, change: bool = False):
        async def run(request: Request) -> Response:
            try:
                if any(isinstance(v, int) and v > ID_MAX for v in request.path_params.values()):
                    raise Refused(404, "No such id: ids are whole numbers up to 9223372036854775807.")
                user = await self.user(request) if signed_in else None
                if signed_in and user is None:
                    raise SignInRequired
                if change and user is not None:
                    form = await self.form(request)
                    given = request.headers.get("x-csrf-token") or form.get("csrf")
                    if not auth.same_token(given, user.csrf):
                        return self.render(request, "error.html", {"user": user, "message":
                                           "This form is stale or did not come from this console: reload and try "
                                           "again."}, 403)
                response = await handler(request, user) if signed_in else await handler(request)
            except SignInRequired:
                if request.headers.get("hx-request") or request.url.path == "/console/events":
                    return Response("sign in again", 401, headers={"HX-Redirect": "/console/login"})
                return RedirectResponse("/console/login?" + urlencode({"next": request.url.path}), 303)
            except psycopg.errors.TransactionRollback as error:  # a deadlock or a serialization failure
                logs.warning("console: a change met another at the same moment", error=str(error).strip()[:300])
                return self.render(request, "error.html", {"message": "Another change was made at the same moment, "
                                                           "so nothing was saved: reload and try again."}, 409)
            except (psycopg.OperationalError, PoolTimeout) as error:
                logs.error("console: database unavailable", error=str(error).strip()[:300])
                return self.render(request, "error.html", {"message": "The database is unavailable; retry in a "
                                                           "moment."}, 503, {"Retry-After": "5"})
            except psycopg.errors.InsufficientPrivilege as error:
                return self.render(request, "error.html", {"message": error.diag.message_primary or str(error)}, 403)
            except Refused as refusal:  # a body over the limits, or a value in the URL that is not one
                response = self.render(request, "error.html", {"message": refusal.reason}, refusal.status,
                                       refusal.headers())
            except psycopg.errors.NoDataFound as error:  # the database's sentence: no window, user, ... of that name
                response = self.render(request, "error.html", {"message": error.diag.message_primary or str(error)},
                                       404)
            except psycopg.DataError as error:  # a value the database cannot hold: the client's mistake, not ours
                response = self.render(request, "error.html", {"message": "The database refused a value: "
                                       + (error.diag.message_primary or str(error))}, 400)
            response.headers.update({k: v for k, v in SECURITY_HEADERS.items() if k not in response.headers})
            return response
        return run

    async def form(self, request: Request) -> dict[str, object]:
        """The form of a POST (read once, kept on the request), its repeated fields as lists. Its body obeys
        intake's limits (--max-body-bytes, at most BODY_MAX here, and --body-timeout): 413 and 408 as there."""
        if "form" not in request.state._state:  # noqa: SLF001 - Starlette keeps request state there
            body = await read_body(request, min(BODY_MAX, self.settings.max_body_bytes), self.settings.body_timeout)
            if body and request.headers.get("content-type", "").partition(";")[0].strip().lower() != FORM_TYPE:
                raise Refused(415, f"A console form is sent as {FORM_TYPE}.")
            try:
                pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=1000)
            except (UnicodeDecodeError, ValueError):
                raise Refused(400, "The form is not UTF-8 form data.") from None
            fields: dict[str, list[str]] = {}
            for key, value in pairs:
                fields.setdefault(key, []).append(value)
            request.state.form = {key: values if len(values) > 1 else values[0] for key, values in fields.items()}
        return request.state.form

    async def user(self, request: Request) -> User | None:
        if "user" in request.state._state:  # noqa: SLF001
            return request.state.user
        token = request.cookies.get(auth.SESSION_COOKIE)
        found = await self.session_user(token) if token else None
        vouched = self.vouched_login(request)
        if vouched is not None and (found is None or found.login != vouched):
            # the proxy authenticated this request: a cookie naming someone else (a shared browser's, a planted one)
            # is not used; if the proxy vouches for no console user, the request is nobody's
            found = await self.proxy_user(request, vouched)
        request.state.user = found
        return found

    async def session_user(self, token: str) -> User | None:
        rows = await self.fetch("session", {"token": token})
        return User(rows[0]["login"], rows[0]["display_name"], rows[0]["role"], token,
                    rows[0]["expires_at"]) if rows else None

    def vouched_login(self, request: Request) -> str | None:
        """The login the single sign-on proxy's header names, when the request's TCP peer is that proxy."""
        if not self.settings.console_auth_header:
            return None
        login = request.headers.get(self.settings.console_auth_header, "").strip().lower()
        if not login:
            return None
        if not auth.trusted(tcp_peer(request.scope), self.proxies):
            logs.warning("console: a single sign-on header from an address that is not a trusted proxy; ignored",
                         login=login[:100], **self.addresses(request))
            return None
        return login

    async def proxy_user(self, request: Request, login: str) -> User | None:
        """The person a trusted proxy vouches for, in the session this process opened for them last while it lives
        (a proxy's requests without a cookie, health checks or API calls, open no session each), else a new one."""
        found = await self.session_user(self.proxy_sessions[login]) if login in self.proxy_sessions else None
        if found is None or found.login != login:
            token = auth.new_token()
            try:
                rows = await self.fetch("proxy_session", {"login": login, "token": token,
                                                          "hours": self.settings.console_session_hours})
            except psycopg.errors.InsufficientPrivilege as error:
                logs.warning("console: single sign-on refused by the database", reason=error.diag.message_primary,
                             hint=error.diag.message_hint)
                return None
            if not rows or not rows[0]["monitoring_console_proxy_session"]:
                self.proxy_sessions.pop(login, None)
                logs.warning("console: the proxy vouched for someone who is not a console user", login=login[:100],
                             **self.addresses(request))
                return None
            self.proxy_sessions[login] = token
            found = await self.session_user(token)
        if found is not None:
            request.state.new_session = found.token
        return found

    @staticmethod
    def addresses(request: Request) -> dict[str, str | None]:
        """For logs: the TCP peer, and apart from it the client that a proxy of FORWARDED_ALLOW_IPS names."""
        peer, client = tcp_peer(request.scope), request.client.host if request.client else None
        return {"peer": peer, **({"forwarded_for": client} if client != peer else {})}

    def cookie_secure(self, request: Request) -> bool:
        return auth.cookie_secure(self.settings.public_url, request.url.scheme, request.headers.get("host", ""))

    def render(self, request: Request, template: str, context: dict, status: int = 200,
               headers: dict | None = None) -> HTMLResponse:
        context = {**context, "user": context.get("user") or getattr(request.state, "user", None)}
        html = self.templates.get_template(template).render(request=request, **context)
        response = HTMLResponse(html, status, headers=headers)
        new_session = getattr(request.state, "new_session", None)
        if new_session:
            self.set_session_cookie(request, response, new_session)
        return response

    def set_session_cookie(self, request: Request, response: Response, token: str) -> None:
        response.set_cookie(auth.SESSION_COOKIE, token, max_age=int(self.settings.console_session_hours * 3600),
                            path="/", httponly=True, samesite="lax", secure=self.cookie_secure(request))

    async def fetch(self, name: str, params: dict) -> list[dict]:
        async with self.pool.connection(timeout=self.settings.lookup_timeout) as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(self.queries[name], params)
            return await cursor.fetchall() if cursor.description else []

    async def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    # --- signing in -----------------------------------------------------------------------------------------
    async def login_form(self, request: Request, error: str = "", status: int = 200,
                         headers: dict | None = None) -> Response:
        token = request.cookies.get(auth.LOGIN_COOKIE) or auth.new_token()
        response = self.render(request, "login.html", {"error": error, "csrf": auth.csrf_token(token),
                                                       "next": safe_next(request.query_params.get("next"))}, status,
                               headers)
        response.set_cookie(auth.LOGIN_COOKIE, token, max_age=3600, path="/console/login", httponly=True,
                            samesite="strict", secure=self.cookie_secure(request))
        return response

    async def login(self, request: Request) -> Response:
        form = await self.form(request)
        login_token = request.cookies.get(auth.LOGIN_COOKIE) or ""
        if not login_token or not auth.same_token(str(form.get("csrf", "")), auth.csrf_token(login_token)):
            return await self.login_form(request, "The sign-in form expired: try again.", 403)
        login = str(form.get("login", "")).strip().lower()[:100]
        password = str(form.get("password", ""))[:1000]
        client = request.client.host if request.client else ""
        if not self.sign_ins.admit():
            logs.warning("console: sign-in turned away", login=login, remote=client, reason="too many at once")
            return await self.login_form(request, "Too many sign-ins at once: try again in a moment.", 503,
                                         {"Retry-After": "5"})
        try:
            attempt, derived = await self.derive_password_hash(login, client, password)
        except psycopg.errors.TooManyConnections as error:
            logs.warning("console: sign-in refused", login=login, remote=client, reason="too many failures")
            return await self.login_form(request, error.diag.message_primary or "too many failed sign-ins", 429)
        finally:
            self.sign_ins.leave()
        token = auth.new_token()
        rows = await self.fetch("finish_sign_in", {"login": login, "attempt": attempt, "derived_hash": derived,
                                                   "token": token, "hours": self.settings.console_session_hours})
        if not rows[0]["monitoring_console_finish_sign_in"]:
            logs.info("console: sign-in failed", login=login, remote=client)
            return await self.login_form(request, "That login and password do not match.", 401)
        logs.info("console: signed in", login=login, remote=client)
        response = RedirectResponse(safe_next(str(form.get("next", ""))), 303)
        self.set_session_cookie(request, response, token)
        response.delete_cookie(auth.LOGIN_COOKIE, path="/console/login")
        return response

    async def derive_password_hash(self, login: str, client: str, password: str) -> tuple[str, str]:
        """Reserve a sign-in in the database (which counts it and may refuse it) and derive the typed password's
        argon2id hash with the salt and costs it hands out: the attempt and the hash for the finish to compare."""
        row = (await self.fetch("begin_sign_in", {"login": login, "client": client}))[0]
        try:
            return row["attempt"], await self.sign_ins.derive(row["argon2_settings"], row["hash_length"], password)
        except auth.BadSettings as error:
            logs.error("console: a stored password hash cannot be checked", login=login, error=str(error))
            return row["attempt"], ""

    async def logout(self, request: Request, user: User) -> Response:
        await self.fetch("sign_out", {"token": user.token})
        response = RedirectResponse("/console/login", 303)
        response.delete_cookie(auth.SESSION_COOKIE, path="/")
        return response

    # --- open alerts ----------------------------------------------------------------------------------------
    async def alert_list(self, request: Request) -> tuple[views.Filters, list[dict], str | None]:
        try:
            filters = views.Filters.from_query(request.query_params)
        except views.BadFilter as error:
            return views.Filters(), [], str(error)
        rows = await self.fetch("alerts", filters.params())
        return filters, rows, None

    def alert_context(self, filters: views.Filters, rows: list[dict], user: User, now: dt.datetime) -> dict:
        alerts = [{**row, "age": views.age(row["created_at"], now),
                   "badges": views.delivery_badges(row["deliveries"]),
                   "holds": views.hold_badges(row["holds"], row["flapping"], row["grouped_into"]),
                   "label_pairs": sorted((row["labels"] or {}).items()) if isinstance(row["labels"], dict) else []}
                  for row in rows]
        groups: list[tuple[str, list[dict]]] = []
        if filters.group:
            key = "alert_type" if filters.group == "type" else "grouped_into"
            by: dict[str, list[dict]] = {}
            for alert in alerts:
                by.setdefault(str(alert[key] or "not grouped"), []).append(alert)
            groups = sorted(by.items(), key=lambda item: -len(item[1]))
        return {"filters": filters, "alerts": alerts, "groups": groups, "limit": views.LIST_LIMIT,
                "version": self.feed.version or "", "user": user}

    async def alerts(self, request: Request, user: User) -> Response:
        filters, rows, error = await self.alert_list(request)
        context = self.alert_context(filters, rows, user, await self.now())
        return self.render(request, "alerts.html", {**context, "error": error}, 400 if error else 200)

    async def alert_rows(self, request: Request, user: User) -> Response:
        filters, rows, error = await self.alert_list(request)
        return self.render(request, "alert_rows.html", self.alert_context(filters, rows, user, await self.now()),
                           400 if error else 200)

    async def bulk(self, request: Request, user: User) -> Response:
        form = await self.form(request)
        ids = form.get("alert_id") or []
        ids = [row_id_or_refuse(i, name="alert_id") for i in (ids if isinstance(ids, list) else [ids]) if i != ""]
        action = form.get("action")
        back = "/console/?" + str(form.get("filters", ""))
        if not ids or action not in ("acknowledge", "resolve"):
            return RedirectResponse(back, 303)
        await self.change(action, user, ids, str(form.get("note", "")), False)
        return RedirectResponse(back, 303)

    async def change(self, action: str, user: User, ids: list[int], note: str, false_positive: bool) -> int:
        params = {"token": user.token, "alert_ids": ids, "note": note[:2000] or None}
        if action == "resolve":
            params["false_positive"] = false_positive
        rows = await self.fetch("resolve" if action == "resolve" else "acknowledge", params)
        done = next(iter(rows[0].values())) if rows else 0
        logs.info(f"console: {action}", login=user.login, alerts=",".join(map(str, ids))[:200], changed=done)
        return done

    # --- one alert --------------------------------------------------------------------------------------------
    async def alert(self, request: Request, user: User, error: str = "", status: int = 200) -> Response:
        alert_id = request.path_params["alert_id"]
        rows = await self.fetch("alert", {"alert_id": alert_id})
        if not rows:
            return self.render(request, "error.html", {"message": f"There is no alert {alert_id}."}, 404)
        alert = rows[0]
        parts = {name: await self.fetch(query, {"alert_id": alert_id}) for name, query in (
            ("deliveries", "alert_deliveries"), ("attempts", "alert_attempts"), ("holds", "alert_holds"),
            ("escalations", "alert_escalations"), ("inbound", "alert_inbound"))}
        now = await self.now()
        return self.render(request, "alert.html", {
            "alert": alert, "age": views.age(alert["created_at"], now), "details": views.details(alert["details"]),
            "labels": views.labels(alert["details"]), "timeline": views.timeline(alert, **parts),
            "deliveries": parts["deliveries"], "next_step": views.next_escalation(parts["escalations"], now),
            "error": error}, status)

    async def act(self, request: Request, user: User) -> Response:
        alert_id, action = request.path_params["alert_id"], request.path_params["action"]
        form = await self.form(request)
        back = f"/console/alerts/{alert_id}"
        try:
            if action in ("acknowledge", "resolve"):
                await self.change(action, user, [alert_id], str(form.get("note", "")),
                                  str(form.get("false_positive", "")) in ("on", "true", "1"))
            elif action == "reopen":
                await self.fetch("reopen", {"token": user.token, "alert_id": alert_id})
            else:
                return self.render(request, "error.html", {"message": f"No such action: {action}."}, 404)
        except psycopg.errors.InsufficientPrivilege:
            raise
        except psycopg.DatabaseError as error:  # a lifecycle rule said no: the database's sentence, shown
            if isinstance(error, psycopg.OperationalError):
                raise
            return await self.alert(request, user, error.diag.message_primary or str(error), 409)
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Refresh": "true"})
        return RedirectResponse(back, 303)

    # --- silences -----------------------------------------------------------------------------------------------
    async def silences(self, request: Request, user: User, error: str = "", status: int = 200) -> Response:
        now = await self.now()
        rows = await self.fetch("silences", {})
        silences = [{**s, "state": views.silence_state(s, now), "matchers_text": views.format_matchers(s["matchers"])}
                    for s in rows]
        return self.render(request, "silences.html", {"silences": silences, "error": error}, status)

    async def silence_form(self, request: Request, user: User, values: dict | None = None, error: str = "",
                           status: int = 200) -> Response:
        values = dict(values or {})
        if not values:
            query = request.query_params
            alert_id, silence_id = query.get("alert", ""), query.get("silence", "")
            if alert_id:
                rows = await self.fetch("alert", {"alert_id": row_id_or_refuse(alert_id, "alert")})
                if rows:
                    like = [{"field": "alert_type", "op": "=", "value": rows[0]["alert_type"]}]
                    if rows[0]["source"]:
                        like.append({"field": "source", "op": "=", "value": rows[0]["source"]})
                    values["matchers"] = views.format_matchers(like)
            elif silence_id:  # recreate an expired one
                rows = await self.fetch("silence", {"silence_id": row_id_or_refuse(silence_id, "silence")})
                if rows:
                    values.update(matchers=views.format_matchers(rows[0]["matchers"]), comment=rows[0]["comment"])
        values.setdefault("duration", "2h")
        return self.render(request, "silence_form.html", {"values": values, "error": error}, status)

    async def silence_preview(self, request: Request, user: User) -> Response:
        form = await self.form(request)
        try:
            matchers = views.parse_matchers(str(form.get("matchers", "")))
            rows = await self.fetch("silence_preview", {"matchers": Jsonb(matchers)})
        except ValueError as error:
            return self.render(request, "silence_preview.html", {"error": str(error)})
        except psycopg.DatabaseError as error:
            if isinstance(error, psycopg.OperationalError):
                raise
            return self.render(request, "silence_preview.html", {"error": error.diag.message_primary or str(error)})
        return self.render(request, "silence_preview.html", {"alerts": rows[:20], "count": len(rows)})

    async def create_silence(self, request: Request, user: User) -> Response:
        form = {k: str(v) for k, v in (await self.form(request)).items() if k != "csrf"}
        try:
            matchers = views.parse_matchers(form.get("matchers", ""))
            ends_at = await self.now() + parse_duration(form.get("duration", ""))
            await self.fetch("create_silence", {"token": user.token, "matchers": Jsonb(matchers), "ends_at": ends_at,
                                                "comment": form.get("comment", "")[:2000],
                                                "starts_at": await self.now()})
        except ValueError as error:
            return await self.silence_form(request, user, form, str(error), 400)
        except psycopg.errors.InsufficientPrivilege:
            raise
        except psycopg.DatabaseError as error:
            if isinstance(error, psycopg.OperationalError):
                raise
            return await self.silence_form(request, user, form, error.diag.message_primary or str(error), 400)
        return RedirectResponse("/console/silences", 303)

    async def expire_silence(self, request: Request, user: User) -> Response:
        await self.fetch("expire_silence", {"token": user.token, "silence_id": request.path_params["silence_id"]})
        return RedirectResponse("/console/silences", 303)

    async def extend_silence(self, request: Request, user: User) -> Response:
        form = await self.form(request)
        try:
            ends_at = await self.now() + parse_duration(str(form.get("duration", "")))
            await self.fetch("extend_silence", {"token": user.token, "silence_id": request.path_params["silence_id"],
                                                "ends_at": ends_at})
        except ValueError as error:
            return await self.silences(request, user, str(error), 400)
        except psycopg.errors.InsufficientPrivilege:
            raise
        except psycopg.DatabaseError as error:
            if isinstance(error, psycopg.OperationalError):
                raise
            return await self.silences(request, user, error.diag.message_primary or str(error), 400)
        return RedirectResponse("/console/silences", 303)

    # --- maintenance windows --------------------------------------------------------------------------------------
    async def windows(self, request: Request, user: User, values: dict | None = None, error: str = "",
                      status: int = 200) -> Response:
        rows = [{**w, "matchers_text": views.format_matchers(w["matchers"]), "when": views.window_when(w)}
                for w in await self.fetch("windows", {})]
        return self.render(request, "windows.html", {"windows": rows, "values": values or {"time_zone": "UTC"},
                                                     "error": error}, status)

    async def save_window(self, request: Request, user: User) -> Response:
        form = {k: v for k, v in (await self.form(request)).items() if k != "csrf"}
        try:
            window = views.window_from_form(form)
            await self.fetch("save_window", {"token": user.token, **window,
                                             "matchers": Jsonb(window["matchers"])})
        except ValueError as error:
            return await self.windows(request, user, form, str(error), 400)
        except psycopg.errors.InsufficientPrivilege:
            raise
        except psycopg.DatabaseError as error:
            if isinstance(error, psycopg.OperationalError):
                raise
            return await self.windows(request, user, form, error.diag.message_primary or str(error), 400)
        return RedirectResponse("/console/windows", 303)

    async def set_window_enabled(self, request: Request, user: User) -> Response:
        form = await self.form(request)
        await self.fetch("set_window_enabled", {"token": user.token, "name": request.path_params["name"],
                                                "enabled": str(form.get("enabled", "")) == "true"})
        return RedirectResponse("/console/windows", 303)

    # --- users (admins) -----------------------------------------------------------------------------------------
    async def users(self, request: Request, user: User, error: str = "", status: int = 200) -> Response:
        if user.role != "admin":
            return self.render(request, "error.html", {"message": "Only a console admin manages users."}, 403)
        return self.render(request, "users.html", {"users": await self.fetch("users", {}), "error": error}, status)

    async def save_user(self, request: Request, user: User) -> Response:
        form = {k: str(v) for k, v in (await self.form(request)).items()}
        password = form.get("password", "")
        try:
            password_hash = await asyncio.to_thread(auth.hash_password, password) if password else None
            await self.fetch("save_user", {"token": user.token, "login": form.get("login", "").strip(),
                                           "display_name": form.get("display_name", "").strip(),
                                           "role": form.get("role", ""), "password_hash": password_hash})
        except ValueError as error:
            return await self.users(request, user, str(error), 400)
        except psycopg.errors.InsufficientPrivilege:
            raise
        except psycopg.DatabaseError as error:
            if isinstance(error, psycopg.OperationalError):
                raise
            return await self.users(request, user, error.diag.message_primary or str(error), 400)
        logs.info("console: user saved", login=user.login, user=form.get("login", "")[:100], role=form.get("role"))
        return RedirectResponse("/console/users", 303)

    async def disable_user(self, request: Request, user: User) -> Response:
        await self.fetch("disable_user", {"token": user.token, "login": request.path_params["login"]})
        return RedirectResponse("/console/users", 303)

    # --- on-call ------------------------------------------------------------------------------------------------
    async def oncall(self, request: Request, user: User, error: str = "", status: int = 200) -> Response:
        schedules = await self.fetch("schedules", {})
        shifts = await self.fetch("shifts", {})
        for schedule in schedules:
            schedule["shifts"] = [shift for shift in shifts if shift["schedule"] == schedule["name"]]
        now = await self.now()
        escalating = [{**e, "due_in": views.escalation_due(e, now) if e["next_step_at"] else "due now"}
                      for e in await self.fetch("escalating", {})]
        return self.render(request, "oncall.html", {
            "schedules": schedules, "people": await self.fetch("people", {}),
            "contacts": await self.fetch("contacts", {"token": user.token}),
            "policies": await self.fetch("policies", {}), "escalating": escalating, "error": error,
            "form": (await self.form(request)) if request.method == "POST" else {}}, status)

    async def add_override(self, request: Request, user: User) -> Response:
        form = {k: str(v) for k, v in (await self.form(request)).items()}
        now = await self.now()
        try:
            starts = views.parse_local_time(form.get("from", ""), now)
            until = starts + parse_duration(form.get("duration", "")) if form.get("duration") else \
                views.parse_local_time(form.get("until", ""), now)
            await self.fetch("add_override", {"token": user.token, "schedule": form.get("schedule", ""),
                                              "person": form.get("person", ""), "from": starts, "until": until,
                                              "reason": form.get("reason", "")[:500]})
        except ValueError as error:
            return await self.oncall(request, user, str(error), 400)
        except psycopg.errors.InsufficientPrivilege:
            raise
        except psycopg.DatabaseError as error:
            if isinstance(error, psycopg.OperationalError):
                raise
            return await self.oncall(request, user, error.diag.message_primary or str(error), 400)
        return RedirectResponse("/console/oncall", 303)

    async def test_page(self, request: Request, user: User) -> Response:
        form = await self.form(request)
        try:
            [row] = await self.fetch("test_page", {"token": user.token, "person": str(form.get("person", ""))[:200]})
        except psycopg.errors.InsufficientPrivilege:
            raise
        except psycopg.DatabaseError as error:
            if isinstance(error, psycopg.OperationalError):
                raise
            return await self.oncall(request, user, error.diag.message_primary or str(error), 400)
        # the test alert's story lists each message and, as the dispatchers send them, what became of it
        return RedirectResponse(f"/console/alerts/{row['alert_id']}", 303)

    # --- SLA ----------------------------------------------------------------------------------------------------
    async def sla(self, request: Request, user: User) -> Response:
        now = await self.now()
        windows = [(label, hours, await self.fetch("sla_summary", {"hours": hours, "at": now}))
                   for label, hours in views.SLA_WINDOWS]
        hours = query_number(request, "hours", 720, 1, SLA_HOURS_MAX)
        breakdowns = {dimension: await self.fetch("sla_breakdown", {"dimension": dimension, "hours": hours, "at": now})
                      for dimension in views.SLA_DIMENSIONS}
        charts = views.daily_charts(await self.fetch("sla_daily", {"at": now}))
        return self.render(request, "sla.html", {"windows": windows, "breakdowns": breakdowns, "charts": charts,
                                                 "hours": hours, "figure": views.figure, "at": now})

    async def sla_csv(self, request: Request, user: User) -> Response:
        hours = query_number(request, "hours", 24, 1, SLA_HOURS_MAX)
        rows = await self.fetch("sla_summary", {"hours": hours, "at": await self.now()})
        header = list(rows[0].keys()) if rows else ["metric"]
        return Response(views.csv_text(header, [list(r.values()) for r in rows]), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="pgalert-sla-{hours}h.csv"'})

    # --- channels -----------------------------------------------------------------------------------------------
    async def channels(self, request: Request, user: User, error: str = "", status: int = 200) -> Response:
        rows = await self.fetch("channels", {})
        settings = {row["provider"]: row for row in await self.fetch("channel_settings", {})}
        channels = [{**c, "rate_1h": views.rate(c["succeeded_1h"], c["attempts_1h"]),
                     "rate_24h": views.rate(c["succeeded_24h"], c["attempts_24h"]),
                     "oldest": views.figure(c["oldest_pending_seconds"], "seconds")
                     if c["oldest_pending_seconds"] is not None else "",
                     "settings_text": json.dumps(settings[c["provider"]]["settings"], indent=1),
                     "default": c["provider"] == c["kind"]} for c in rows]
        return self.render(request, "channels.html", {"channels": channels, "error": error}, status)

    async def set_channel(self, request: Request, user: User) -> Response:
        form = {k: str(v) for k, v in (await self.form(request)).items()}
        provider = request.path_params["provider"]
        try:
            kinds = {row["provider"]: row["kind"] for row in await self.fetch("channel_settings", {})}
            changed = views.channel_settings(kinds.get(provider, ""), form.get("settings", "{}"))
            await self.fetch("set_channel", {"token": user.token, "provider": provider,
                                             "description": form.get("description", "")[:500],
                                             "settings": Jsonb(changed)})
        except ValueError as error:
            return await self.channels(request, user, f"{provider}: {error}", 400)
        except psycopg.errors.InsufficientPrivilege:
            raise
        except psycopg.DatabaseError as error:
            if isinstance(error, psycopg.OperationalError):
                raise
            return await self.channels(request, user, error.diag.message_primary or str(error), 400)
        return RedirectResponse("/console/channels", 303)

    # --- rules --------------------------------------------------------------------------------------------------
    async def rules(self, request: Request, user: User, error: str = "", status: int = 200) -> Response:
        scheduler = await self.fetch("scheduler", {})
        context = {"rules": await self.fetch("rules", {}), "error": error,
                   "scheduler": views.scheduler_state(scheduler[0] if scheduler else None)}
        return self.render(request, "rules.html", context, status)

    async def set_rule_enabled(self, request: Request, user: User) -> Response:
        form = await self.form(request)
        try:
            await self.fetch("set_rule_enabled", {"token": user.token, "rule": request.path_params["rule"],
                                                  "enabled": str(form.get("enabled", "")) == "true"})
        except psycopg.errors.InsufficientPrivilege:
            raise
        except psycopg.DatabaseError as error:
            if isinstance(error, psycopg.OperationalError):
                raise
            return await self.rules(request, user, error.diag.message_primary or str(error), 400)
        return RedirectResponse("/console/rules", 303)

    async def backtest(self, request: Request, user: User) -> Response:
        days = query_number(request, "days", 7, 1, 30)
        try:
            rows = await self.fetch("backtest", {"rule": request.path_params["rule"], "days": days})
        except psycopg.DatabaseError as error:
            if isinstance(error, psycopg.OperationalError):
                raise
            return self.render(request, "backtest.html", {"error": error.diag.message_primary or str(error)})
        return self.render(request, "backtest.html", {"fired": rows, "days": days,
                                                      "rule": request.path_params["rule"]})

    # --- live updates -------------------------------------------------------------------------------------------
    async def events(self, request: Request, user: User) -> Response:
        """Server-Sent Events: `alerts` whenever what the console shows changed. A page that reconnects says what
        it saw (Last-Event-ID, or the version it was rendered with) and hears at once if that is out of date."""
        seen = request.headers.get("last-event-id") or request.query_params.get("since", "")
        queue = self.feed.subscribe()

        async def stream():
            try:
                yield "retry: 1000\n\n"
                current = self.feed.version
                if current and current != seen:
                    yield f"id: {current}\nevent: alerts\ndata: changed\n\n"
                checked = quiet_since = time.monotonic()
                while not self.shutting_down():
                    if await request.is_disconnected():
                        return
                    try:
                        version = await _wait(queue, STREAM_TICK_SECONDS)
                    except TimeoutError:
                        version = None
                        if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                            yield ": keep-alive\n\n"
                            quiet_since = time.monotonic()
                    if time.monotonic() - checked > 60:  # a session ended or signed out stops its stream
                        if not await self.fetch("session", {"token": user.token}):
                            return
                        checked = time.monotonic()
                    if version:
                        yield f"id: {version}\nevent: alerts\ndata: changed\n\n"
            finally:
                self.feed.unsubscribe(queue)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _wait(queue: asyncio.Queue[str], seconds: float) -> str:
    return await asyncio.wait_for(queue.get(), seconds)


def query_number(request: Request, name: str, default: int, low: int, high: int) -> int:
    """A whole number from the URL's query, or `default` when it is not given; anything else is refused."""
    text = request.query_params.get(name, "")
    if not text:
        return default
    try:
        return whole_number(text, name, low, high)
    except ValueError as error:
        raise Refused(400, f"{error}.") from None


def row_id_or_refuse(text: object, name: str) -> int:
    try:
        return row_id(text, name)
    except ValueError as error:
        raise Refused(400, f"{error}.") from None


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a console path only, never another site."""
    if value and value.startswith("/console/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console/"
