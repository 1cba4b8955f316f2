"""The HTTP service behind `pgalert serve`: authenticate, translate, call one inbound SQL function, answer.

Every request is authenticated on its raw bytes before it is parsed; a body over the limit is refused before
it is read in full. The database decides everything else (sql/inbound.sql), so any number of serve processes
can run side by side behind a load balancer.
"""

from __future__ import annotations

import base64
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, parse_qsl

import anyio
import psycopg
import requests
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dispatcher import logs
from dispatcher.db import INBOUND_FILE, named_queries
from dispatcher.inbound import translate, verify
from dispatcher.inbound.openapi import openapi_document
from dispatcher.inbound.settings import ServeSettings
from dispatcher.request_values import row_id

INCIDENT_ID = re.compile(r"^[A-Z0-9]{1,40}$")
UNKNOWN_TOKEN = "the token is not one of an active API client"
NO_PUBLIC_URL = ("PGALERT_PUBLIC_URL is not set: Twilio callbacks are refused, because the URL their signature "
                 "covers must be the configured one, not the one the request names")


class Refused(Exception):
    """Answer with this status and reason; nothing was written."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def headers(self) -> dict[str, str]:
        """A body refused before its end (413, 408) is not read further, so the connection cannot carry another
        request: closing it also frees it at once from a client that trickles on."""
        return {"Connection": "close"} if self.status in (408, 413) else {}


@dataclass
class InboundMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter("pgalert_inbound_requests_total", "Inbound requests by endpoint and HTTP status",
                                ["endpoint", "status"], registry=self.registry)
        self.outcomes = Counter("pgalert_inbound_outcomes_total",
                                "What inbound requests did, by source and outcome (acknowledged, opened, ...)",
                                ["via", "outcome"], registry=self.registry)
        self.seconds = Histogram("pgalert_inbound_request_seconds", "Time to answer an inbound request", ["endpoint"],
                                 registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


class Inbound:
    def __init__(self, settings: ServeSettings, metrics: InboundMetrics | None = None):
        self.settings = settings
        self.metrics = metrics or InboundMetrics()
        self.pool = AsyncConnectionPool(
            settings.database_url, min_size=1, max_size=settings.pool_size, open=False,
            kwargs={"autocommit": True, "application_name": "pgalert serve",
                    "options": f"-c statement_timeout={settings.statement_timeout_ms}"},
            # a pooled connection that died with a PostgreSQL restart is replaced, not handed out
            check=AsyncConnectionPool.check_connection,
        )
        self.console = None
        if settings.console:
            from dispatcher.console.app import Console

            self.console = Console(settings, self.pool, lambda: self.shutting_down())
        self.shutting_down: Callable[[], bool] = lambda: False  # the server replaces it with its own

    # --- the application -------------------------------------------------------------------------------
    def app(self) -> Starlette:
        routes = [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
            Route("/v1/alerts", self.endpoint("api", self.api_alerts), methods=["POST"]),
            Route("/v1/alertmanager", self.endpoint("alertmanager", self.alertmanager), methods=["POST"]),
            Route("/v1/pagerduty", self.endpoint("pagerduty", self.pagerduty), methods=["POST"]),
            Route("/v1/opsgenie", self.endpoint("opsgenie", self.opsgenie), methods=["POST"]),
            Route("/v1/slack/actions", self.endpoint("slack", self.slack), methods=["POST"]),
            Route("/v1/twilio/sms", self.endpoint("twilio", self.twilio_sms), methods=["POST"]),
            Route("/v1/twilio/voice", self.endpoint("twilio", self.twilio_voice), methods=["POST"]),
            Route("/v1/twilio/status", self.endpoint("twilio", self.twilio_status), methods=["POST"]),
            # POST only: a link previewer or a mail scanner that fetches URLs must not acknowledge anything
            Route("/v1/ntfy/ack/{token}", self.endpoint("ntfy", self.ntfy_ack), methods=["POST"]),
        ]
        if self.console:
            routes += self.console.routes()
        return Starlette(routes=routes, lifespan=self.lifespan)

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        # wait=False: serve starts (and answers 503) while PostgreSQL is still coming up
        await self.pool.open(wait=False)
        if self.console:
            self.console.feed.start()
        logs.info("serve ready", endpoints=",".join(self.enabled_endpoints()), console=bool(self.console))
        if self.settings.twilio_auth_token and not self.settings.public_url:
            logs.warning("twilio callbacks refused", reason=NO_PUBLIC_URL)
        try:
            yield
        finally:
            if self.console:
                await self.console.feed.stop()
            await self.pool.close(timeout=5)

    def enabled_endpoints(self) -> list[str]:
        s = self.settings
        return ["api", "alertmanager"] + [name for name, on in (
            ("pagerduty", bool(s.pagerduty_webhook_secrets)), ("opsgenie", bool(s.opsgenie_webhook_token)),
            ("slack", bool(s.slack_signing_secret)), ("twilio", bool(s.twilio_auth_token)),
            ("ntfy", bool(s.action_key))) if on]

    def endpoint(self, name: str, handler: Callable[[Request, bytes], Awaitable[Response]]):
        async def run(request: Request) -> Response:
            started = time.perf_counter()
            try:
                if name not in self.enabled_endpoints():
                    raise Refused(404, f"the {name} endpoint is not configured on this server")
                body = await read_body(request, self.settings.max_body_bytes, self.settings.body_timeout)
                response = await handler(request, body)
            except ClientDisconnect:
                # nobody is left to answer; nothing was written
                logs.info("inbound request abandoned by the client", endpoint=name,
                          remote=request.client.host if request.client else None)
                response = Response(status_code=499)
            except Refused as refusal:
                level = logs.warning if refusal.status in (401, 403) else logs.info
                level("inbound request refused", endpoint=name, status=refusal.status, reason=refusal.reason,
                      remote=request.client.host if request.client else None)
                response = JSONResponse({"error": refusal.reason}, refusal.status, headers=refusal.headers())
            except translate.BadPayload as error:
                logs.info("inbound request refused", endpoint=name, status=400, reason=str(error))
                response = JSONResponse({"error": str(error)}, 400)
            except psycopg.DataError as error:  # a value the database cannot hold: the sender's mistake
                reason = "the database refused a value: " + (error.diag.message_primary or str(error))
                logs.info("inbound request refused", endpoint=name, status=400, reason=reason[:300])
                response = JSONResponse({"error": reason}, 400)
            except (psycopg.OperationalError, PoolTimeout) as error:
                logs.error("database unavailable", endpoint=name, error=str(error).strip()[:300])
                response = JSONResponse({"error": "database unavailable; retry later"}, 503,
                                        headers={"Retry-After": "5"})
            self.metrics.requests.labels(name, str(response.status_code)).inc()
            self.metrics.seconds.labels(name).observe(time.perf_counter() - started)
            return response
        return run

    # --- probes ----------------------------------------------------------------------------------------
    async def healthz(self, _request: Request) -> Response:
        try:
            rows = await self.call("ready", {})
        except (psycopg.Error, PoolTimeout) as error:
            return JSONResponse({"status": "database unavailable", "error": type(error).__name__}, 503)
        return JSONResponse({"status": "ok"} if rows and rows[0][0] else {"status": "pgalert not installed"},
                            200 if rows and rows[0][0] else 503)

    async def prometheus(self, _request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi(self, _request: Request) -> Response:
        return JSONResponse(openapi_document(self.settings.max_body_bytes))

    # --- alerts in: the generic API and Alertmanager -------------------------------------------------------
    async def api_alerts(self, request: Request, body: bytes) -> Response:
        token = await self.authenticated_token(request)
        return await self.raise_alerts("api", token, translate.api_alerts(translate.parse_json(body)))

    async def alertmanager(self, request: Request, body: bytes) -> Response:
        token = await self.authenticated_token(request)
        alerts = translate.alertmanager_alerts(translate.parse_json(body), self.settings.alertmanager_default_severity)
        return await self.raise_alerts("alertmanager", token, alerts)

    async def authenticated_token(self, request: Request) -> str:
        """The bearer token, once the database knows it: a caller without one learns nothing about how its
        body would be read, and no body of theirs is parsed."""
        token = bearer_token_or_refuse(request)
        rows = await self.call("client", {"token_sha256": verify.token_sha256(token)})
        if not rows or rows[0][0] is None:
            raise Refused(401, UNKNOWN_TOKEN)
        return token

    async def raise_alerts(self, via: str, token: str, alerts: list[dict | translate.Rejected]) -> Response:
        # The alerts that could be read go to the database in one call, which checks the token again: one
        # revoked between the two calls stops here. The others answer `rejected` at their own index.
        valid = [(i, a) for i, a in enumerate(alerts) if not isinstance(a, translate.Rejected)]
        results: list[dict] = [{"index": i, "outcome": "rejected", "alert_id": None, "error": a.reason}
                               for i, a in enumerate(alerts) if isinstance(a, translate.Rejected)]
        client = None
        if valid:
            try:
                rows = await self.call("raise", {"via": via, "token_sha256": verify.token_sha256(token),
                                                 "alerts": Jsonb([a for _, a in valid])})
            except psycopg.errors.InvalidAuthorizationSpecification:
                raise Refused(401, UNKNOWN_TOKEN) from None
            client = rows[0][4] if rows else None
            results += [{"index": valid[i][0], "outcome": o, "alert_id": a, **({"error": e} if e else {})}
                        for i, o, a, e, _ in rows]
        results.sort(key=lambda r: r["index"])
        for result in results:
            self.metrics.outcomes.labels(via, result["outcome"]).inc()
        rejected = sum(r["outcome"] == "rejected" for r in results)
        logs.info("alerts received", via=via, client=client, alerts=len(results), rejected=rejected)
        return JSONResponse({"results": results}, 422 if rejected == len(results) else 200)

    # --- actions at providers ----------------------------------------------------------------------------
    async def pagerduty(self, request: Request, body: bytes) -> Response:
        if not verify.pagerduty_signature_ok(body, request.headers.get("x-pagerduty-signature"),
                                             self.settings.pagerduty_webhook_secrets):
            raise Refused(401, "X-PagerDuty-Signature is missing or matches no configured secret")
        action = translate.pagerduty_action(translate.parse_json(body))
        if action.action is None:
            if action.provider_key and action.reference:  # incident.triggered: learn the incident's id
                await self.find_alert(action)
            return self.ignored(action)
        alert_id = await self.find_alert(action)
        if alert_id is None and not action.provider_key and action.reference:
            key = await self.pagerduty_incident_key(action.reference)
            if key:
                alert_id = await self.find_alert(action, key)
        return await self.act(action, alert_id)

    async def opsgenie(self, request: Request, body: bytes) -> Response:
        if not verify.shared_token_ok(opsgenie_token(request), self.settings.opsgenie_webhook_token):
            raise Refused(401, "the Opsgenie webhook token is missing or wrong")
        action = translate.opsgenie_action(translate.parse_json(body))
        if action.action is None:
            return self.ignored(action)
        return await self.act(action, await self.find_alert(action))

    async def slack(self, request: Request, body: bytes) -> Response:
        problem = verify.slack_signature_problem(body, request.headers.get("x-slack-request-timestamp"),
                                                 request.headers.get("x-slack-signature"),
                                                 self.settings.slack_signing_secret, time.time())
        if problem:
            raise Refused(401, problem)
        try:
            form = parse_qs(body.decode(), strict_parsing=False)
        except UnicodeDecodeError:
            raise translate.BadPayload("body is not a UTF-8 form") from None
        click = translate.slack_click((form.get("payload") or [None])[0])
        if click.action is None:
            return Response(status_code=200)
        action = click.as_action()
        alert_id = await self.find_alert(action)
        outcome, _alert_id, status, _actor = await self.record(action, alert_id, slack_member_id=click.member_id)
        task = None
        if click.response_url:
            if click.response_url.startswith(self.settings.slack_response_url_prefix):
                update = translate.slack_updated_message(click.message, outcome, click.member_id, status)
                task = BackgroundTask(self.post_to_slack, click.response_url, update)
            else:
                logs.warning("slack response_url not followed", reason="not under the allowed prefix")
        return Response(status_code=200, background=task)

    # --- a paged person's phone: Twilio (texts, keypresses, status) and ntfy (the Acknowledge button) ------------
    async def twilio_form(self, request: Request, body: bytes) -> tuple[dict[str, str], str]:
        """The form Twilio posted and its receipt, once X-Twilio-Signature proves Twilio sent it to this URL;
        nothing of it is used before. The URL is PGALERT_PUBLIC_URL's, never the request's: taken from the Host
        header, a signature made for another host (or a proxy's view of this one) would be believed."""
        if not self.settings.public_url:
            raise Refused(403, NO_PUBLIC_URL)
        try:
            pairs = parse_qsl(body.decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            raise translate.BadPayload("body is not a UTF-8 form") from None
        url = self.settings.public_url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if not verify.twilio_signature_ok(url, pairs, request.headers.get("x-twilio-signature"),
                                          self.settings.twilio_auth_token):
            raise Refused(401, "X-Twilio-Signature is missing or does not match this URL and body")
        return dict(pairs), verify.twilio_receipt(url, pairs)

    async def twilio_sms(self, request: Request, body: bytes) -> Response:
        form, receipt = await self.twilio_form(request, body)
        sender, reply = form.get("From", ""), translate.sms_reply(form.get("Body", ""))
        if reply.action in ("stop", "start"):
            [(changed,)] = await self.call("contact_opt_out", {"receipt_id": receipt, "address": sender,
                                                               "stop": reply.action == "stop"})
            outcome = reply.action if changed is not None else "duplicate"
            self.metrics.outcomes.labels("sms", outcome).inc()
            logs.info("contact opted " + ("out" if reply.action == "stop" else "in"), via="sms",
                      duplicate=changed is None)
            return twiml_response(translate.twiml())  # Twilio and the carrier confirm it themselves
        if reply.action is None:
            return twiml_response(translate.twiml(message=translate.REPLY_HINT))
        outcome, alert_id = await self.contact_act("sms", receipt, sender, None, reply.alert_id, reply.action)
        return twiml_response(translate.twiml(message=translate.phone_answer(outcome, alert_id, reply.action)))

    async def twilio_voice(self, request: Request, body: bytes) -> Response:
        form, receipt = await self.twilio_form(request, body)
        action = translate.keypress(form.get("Digits"))
        try:
            delivery = row_id(request.query_params.get("d", ""), "d")
        except ValueError:
            delivery = None
        if action is None or delivery is None:
            return twiml_response(translate.twiml(say="Not understood. Goodbye."))
        outcome, alert_id = await self.contact_act("voice", receipt, form.get("To", ""), delivery, None, action)
        return twiml_response(translate.twiml(say=(translate.phone_answer(outcome, alert_id, action)
                                                   or "Nothing was changed.") + " Goodbye."))

    async def twilio_status(self, request: Request, body: bytes) -> Response:
        # no receipt: a status fails a sent message once, so its repeat changes nothing
        form, _receipt = await self.twilio_form(request, body)
        reference = form.get("MessageSid") or form.get("CallSid") or ""
        status = form.get("MessageStatus") or form.get("CallStatus") or ""
        [(result,)] = await self.call("contact_status", {"reference": reference, "status": status,
                                                         "error_code": form.get("ErrorCode") or None})
        self.metrics.outcomes.labels("twilio_status", result).inc()
        if result == "failed":
            logs.info("page not reached: next method", via="twilio", status=status)
        return Response(status_code=204)

    async def ntfy_ack(self, request: Request, _body: bytes) -> Response:
        delivery = verify.action_token_delivery(self.settings.action_key, request.path_params["token"], time.time())
        if delivery is None:
            raise Refused(403, "this link is not valid, or it has expired")
        outcome, alert_id = await self.contact_act("push", f"ntfy:{delivery}", None, delivery, None, "acknowledge")
        return JSONResponse({"outcome": outcome, "alert_id": alert_id})

    async def contact_act(self, via: str, receipt_id: str, address: str | None, delivery_id: int | None,
                          alert_id: int | None, action: str) -> tuple[str, int | None]:
        rows = await self.call("contact_act", {"via": via, "receipt_id": receipt_id, "address": address,
                                               "delivery_id": delivery_id, "alert_id": alert_id, "action": action,
                                               "occurred_at": None})
        outcome, alert_id, _status, actor = rows[0]
        self.metrics.outcomes.labels(via, outcome).inc()
        level = logs.warning if outcome == "unknown_sender" else logs.info
        level("phone action", via=via, outcome=outcome, alert_id=alert_id,
              actor=actor if outcome != "unknown_sender" else None)
        return outcome, alert_id

    def ignored(self, action: translate.ProviderAction) -> Response:
        self.metrics.outcomes.labels(action.via, "ignored").inc()
        return JSONResponse({"outcome": "ignored", "event": action.event})

    async def act(self, action: translate.ProviderAction, alert_id: int | None) -> Response:
        outcome, alert_id, status, _actor = await self.record(action, alert_id)
        return JSONResponse({"outcome": outcome, "alert_id": alert_id, "status": status})

    async def record(self, action: translate.ProviderAction, alert_id: int | None,
                     slack_member_id: str | None = None) -> tuple[str, int | None, str | None, str]:
        rows = await self.call("act", {
            "via": action.via, "receipt_id": action.receipt_id, "alert_id": alert_id, "action": action.action,
            "actor": action.actor, "occurred_at": action.occurred_at, "note": action.note,
            "slack_member_id": slack_member_id})
        outcome, alert_id, status, actor = rows[0]
        self.metrics.outcomes.labels(action.via, outcome).inc()
        logs.info("provider action", via=action.via, provider_event=action.event, outcome=outcome, alert_id=alert_id,
                  actor=actor)
        return outcome, alert_id, status, actor

    async def find_alert(self, action: translate.ProviderAction, provider_key: str | None = None) -> int | None:
        rows = await self.call("find_alert", {"via": action.via, "provider_key": provider_key or action.provider_key,
                                              "reference": action.reference})
        return rows[0][0]

    async def pagerduty_incident_key(self, incident_id: str) -> str | None:
        """The dedup key of the event that opened an incident, from PagerDuty's REST API (a read-only key):
        webhooks do not promise to carry it. Asked once per incident; the answer is remembered in SQL."""
        if not self.settings.pagerduty_api_token or not INCIDENT_ID.match(incident_id):
            return None
        url = f"{self.settings.pagerduty_api_url.rstrip('/')}/incidents/{incident_id}"
        headers = {"Authorization": f"Token token={self.settings.pagerduty_api_token}",
                   "Accept": "application/vnd.pagerduty+json;version=2"}
        try:
            reply = await anyio.to_thread.run_sync(
                lambda: requests.get(url, headers=headers, timeout=self.settings.lookup_timeout))
        except requests.RequestException as error:
            raise Refused(503, f"PagerDuty's REST API did not answer ({type(error).__name__}); retry later") from None
        if reply.status_code == 404:
            return None
        if reply.status_code != 200:
            raise Refused(503, f"PagerDuty's REST API answered HTTP {reply.status_code}; retry later")
        try:
            key = reply.json()["incident"].get("incident_key")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise Refused(503, "PagerDuty's REST API answered something that is not an incident") from None
        return key if isinstance(key, str) else None

    async def post_to_slack(self, url: str, message: dict) -> None:
        try:
            reply = await anyio.to_thread.run_sync(lambda: requests.post(url, json=message, timeout=5))
            if reply.status_code != 200:
                logs.warning("slack message update failed", status=reply.status_code)
        except requests.RequestException as error:
            logs.warning("slack message update failed", error=type(error).__name__)

    async def call(self, query: str, params: dict) -> list[tuple]:
        """Run the named query of dispatcher/inbound/queries.sql."""
        async with self.pool.connection(timeout=self.settings.lookup_timeout) as conn:
            cursor = await conn.execute(named_queries(INBOUND_FILE)[query], params)
            return await cursor.fetchall()


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, refused with 413 as soon as it is known to be over the limit (by its Content-Length,
    or while it streams in), so an oversized request costs neither memory nor parsing; and with 408 when it
    has not all arrived within timeout seconds, so a client that trickles or stalls holds no worker."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"body over {limit} bytes")
    chunks, size = [], 0
    with anyio.move_on_after(timeout) as reading:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refused(413, f"body over {limit} bytes")
            chunks.append(chunk)
    if reading.cancelled_caught:
        raise Refused(408, f"the body did not arrive within {timeout:g} s")
    return b"".join(chunks)


def bearer_token_or_refuse(request: Request) -> str:
    token = verify.bearer_token(request.headers.get("authorization"))
    if not token:
        raise Refused(401, "an Authorization: Bearer <token> header is required")
    return token


def opsgenie_token(request: Request) -> str | None:
    """Opsgenie does not sign: the token comes as a bearer token, basic auth's password, or ?token= in the URL."""
    header = request.headers.get("authorization") or ""
    if header.lower().startswith("basic "):
        try:
            return base64.b64decode(header[6:].strip()).decode().partition(":")[2] or None
        except ValueError:  # binascii.Error, UnicodeDecodeError, and b64decode's own for a non-ASCII header
            return None
    return verify.bearer_token(header) or request.query_params.get("token")


def twiml_response(document: bytes) -> Response:
    return Response(document, media_type="application/xml")
