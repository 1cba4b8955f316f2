"""What the console's pages show, from the rows the database gives: filters from the URL, badges, a merged
timeline, links safe to click, silence matchers as people type them. Pure: rows in, context out."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from urllib.parse import urlencode, urlsplit

from dispatcher.matchers import parse_duration, parse_matcher
from dispatcher.providers.kinds import KINDS
from dispatcher.request_values import bounded_time, whole_number

SEVERITIES = ("critical", "warning", "info")
STATUSES = ("active", "open", "acknowledged", "resolved")  # active: open or acknowledged, the default
LIST_LIMIT = 500
LABEL = re.compile(r"^([A-Za-z0-9_.:-]{1,100})=(.{0,200})$")


class BadFilter(ValueError):
    pass


@dataclass(frozen=True)
class Filters:
    """The open-alerts page's filter, as it lives in the URL (so a link shares it)."""

    status: str = "active"
    severity: str = ""
    alert_type: str = ""
    source: str = ""
    label: str = ""  # key=value
    q: str = ""
    group: str = ""  # "", "type" or "group"

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filters:
        values = {name: (query.get(name) or "").strip()[:200] for name in cls.__dataclass_fields__}
        if values["status"] and values["status"] not in STATUSES:
            raise BadFilter(f"status is one of {', '.join(STATUSES)}")
        if values["severity"] and values["severity"] not in SEVERITIES:
            raise BadFilter(f"severity is one of {', '.join(SEVERITIES)}")
        if values["label"] and not LABEL.match(values["label"]):
            raise BadFilter("label is KEY=VALUE, e.g. env=prod")
        if values["group"] not in ("", "type", "group"):
            raise BadFilter("group is type or group")
        return cls(**{**values, "status": values["status"] or "active"})

    def params(self) -> dict[str, object]:
        """The named query's parameters: NULL for a filter not set."""
        key, _, value = self.label.partition("=")
        return {"status": self.status, "severity": self.severity or None, "alert_type": self.alert_type or None,
                "source": self.source or None, "label_key": key or None, "label_value": value if key else None,
                "q": self.q or None, "limit": LIST_LIMIT}

    def query_string(self, **changes: str) -> str:
        values = {**asdict(self), **changes}
        return urlencode({name: value for name, value in values.items()
                          if value and not (name == "status" and value == "active")})

    def active(self) -> bool:
        return any(value for name, value in asdict(self).items() if name not in ("status", "group")) \
            or self.status != "active"


def age(since: dt.datetime | None, now: dt.datetime) -> str:
    """3s, 5m, 2h 10m, 3d 4h: how long ago, as a responder reads it at a glance."""
    if since is None:
        return ""
    seconds = max(int((now - since).total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m" if minutes else f"{seconds}s"


def scheduler_state(row: Mapping[str, object] | None) -> tuple[str, str]:
    """(badge kind, words) for who runs the scheduled jobs (rules, escalations, hold releases), from the console's
    `scheduler` query: pg_cron, the dispatchers where pg_cron cannot, or nobody."""
    if not row:
        return "muted", "Scheduled jobs: unknown"
    if not row["running"]:
        why = f" pg_cron cannot: {row['pg_cron_problem']}." if row["pg_cron_problem"] else ""
        return "bad", (f"Scheduled jobs are not running (none for {round(row['seconds_since_run'] or 0)} s): rules are "
                       f"not evaluated and escalations do not move on.{why} Run `pgalert dispatch` (--scheduler auto).")
    if row["by_pg_cron"]:
        return "ok", "Scheduled jobs run under pg_cron."
    why = f" (pg_cron cannot: {row['pg_cron_problem']})" if row["pg_cron_problem"] else ""
    return "ok", f"Scheduled jobs run in the dispatchers{why}."


def safe_link(value: object) -> str | None:
    """A URL worth making clickable: http or https with a host. Anything else (javascript:, data:, a relative
    path) is shown as text."""
    if not isinstance(value, str) or len(value) > 2000 or any(c in value for c in "\r\n\t\0 "):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme in ("http", "https") and parts.hostname else None


@dataclass(frozen=True)
class Detail:
    """One entry of an alert's details: a link when it is a safe one, else text."""

    key: str
    text: str
    link: str | None = None


def details(details_json: Mapping[str, object] | None) -> list[Detail]:
    entries = []
    for key, value in (details_json or {}).items():
        if key == "labels" and isinstance(value, Mapping):
            continue  # shown as labels
        text = value if isinstance(value, str) else _compact(value)
        entries.append(Detail(str(key), text[:2000], safe_link(value)))
    return entries


def labels(details_json: Mapping[str, object] | None) -> list[tuple[str, str]]:
    found = (details_json or {}).get("labels")
    if not isinstance(found, Mapping):
        return []
    return sorted((str(k), v if isinstance(v, str) else _compact(v)) for k, v in found.items())


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ": "), default=str)


@dataclass(frozen=True)
class Badge:
    """Where an alert went, or what holds it: a word, a kind for its colour, and why."""

    text: str
    kind: str
    title: str = ""


DELIVERY_KIND = {"succeeded": "ok", "pending": "wait", "sending": "wait", "held": "held", "failed": "bad",
                 "skipped": "muted"}


def delivery_badges(deliveries: Iterable[Mapping[str, object]] | None) -> list[Badge]:
    return [Badge(str(d["provider"]), DELIVERY_KIND.get(str(d["status"]), "muted"), f"{d['provider']}: {d['status']}")
            for d in deliveries or ()]


def hold_badges(holds: Iterable[Mapping[str, object]] | None, flapping: bool, grouped: str | None) -> list[Badge]:
    badges = [Badge({"silence": "silenced", "maintenance": "maintenance", "inhibition": "inhibited"}.get(
        str(h["reason"]), str(h["reason"])), "held", str(h["held_by"])) for h in holds or ()]
    if flapping:
        badges.append(Badge("flapping", "held", "notified once its state settles"))
    if grouped:
        badges.append(Badge("grouped", "held", f"notified through group {grouped}"))
    return badges


@dataclass(frozen=True)
class Entry:
    """One line of an alert's timeline."""

    at: dt.datetime
    what: str
    kind: str  # created, delivery, attempt, hold, escalation, lifecycle, inbound
    detail: str = ""
    extra: dict = field(default_factory=dict)


def timeline(alert: Mapping[str, object], deliveries: Iterable[Mapping], attempts: Iterable[Mapping],
             holds: Iterable[Mapping], escalations: Iterable[Mapping], inbound: Iterable[Mapping]) -> list[Entry]:
    """Everything that happened to one alert, in time order: its creation and repeats, each delivery and each of
    its attempts, holds and releases, escalation, acknowledge and resolve (who and via what), provider actions."""
    origin = f" from {alert['source']}" if alert["source"] else ""
    entries = [Entry(alert["created_at"], "raised", "created", f"{alert['severity']} {alert['alert_type']}{origin}")]
    if alert["occurrence_count"] > 1:
        entries.append(Entry(alert["last_seen_at"], f"repeated: {alert['occurrence_count']} occurrences in all",
                             "created"))
    providers = {}
    for d in deliveries:
        providers[d["id"]] = d
        target = f" to {d['target']}" if d.get("target") and not str(d["target"]).startswith("before reopen") else ""
        contact = d.get("contact") if isinstance(d.get("contact"), Mapping) else None
        if contact:  # a message to a person's phone (sql/paging.sql): to whom and how, not the page's ids
            target = f" to {d.get('person') or 'someone'}: {contact.get('kind')} {contact.get('shown')}"
        entries.append(Entry(d["created_at"], f"{d['action']} queued for {d['provider']}{target}", "delivery",
                             f"now {d['status']}" + (f", next try {d['next_attempt_at']:%H:%M:%S}"
                                                     if d["status"] == "pending" and d["attempts"] else "")
                             + (f": {d['last_error']}" if d["status"] in ("failed", "skipped") and d.get("last_error")
                                else "")))
    for a in attempts:
        d = providers.get(a["delivery_id"], {})
        status = f"HTTP {a['http_status']}" if a["http_status"] else ""
        ms = round((a["finished_at"] - a["started_at"]).total_seconds() * 1000)
        entries.append(Entry(a["finished_at"], f"{d.get('action', '')} to {d.get('provider', '?')}: {a['outcome']}",
                             "attempt", ", ".join(p for p in (f"attempt {a['attempt']}", status, f"{ms} ms",
                                                               a["error"] or "") if p)))
    for h in holds:
        entries.append(Entry(h["held_at"], f"held: {h['reason']}", "hold", h["held_by"]))
        if h["released_at"]:
            entries.append(Entry(h["released_at"], f"released: {h['reason']}", "hold", h["release_reason"] or ""))
    for e in escalations:
        entries.append(Entry(e["started_at"], f"escalation {e['policy_name']} started", "escalation",
                             f"{len(e['steps'] or [])} steps"))
        if e["finished_at"]:
            entries.append(Entry(e["finished_at"], f"escalation {e['policy_name']} ended", "escalation",
                                 e["finish_reason"] or ""))
    if alert["acknowledged_at"]:
        entries.append(Entry(alert["acknowledged_at"], f"acknowledged by {alert['acknowledged_by']}", "lifecycle",
                             "via " + (alert["acknowledged_via"] or "sql")
                             + (f": {alert['acknowledge_note']}" if alert["acknowledge_note"] else "")))
    if alert["resolved_at"]:
        entries.append(Entry(alert["resolved_at"], f"resolved by {alert['resolved_by']}", "lifecycle",
                             "via " + (alert["resolved_via"] or "sql")
                             + (" (false positive)" if alert["false_positive"] else "")
                             + (f": {alert['resolve_note']}" if alert["resolve_note"] else "")))
    for i in inbound:
        entries.append(Entry(i["occurred_at"] or i["received_at"], f"{i['action']} at {i['via']}", "inbound",
                             (f"by {i['actor']}, " if i["actor"] else "") + i["outcome"]))
    return sorted(entries, key=lambda entry: entry.at)


def escalation_due(e: Mapping, now: dt.datetime) -> str:
    """When a running escalation's next step goes: "in 4m", "due now", or "held by silence 3" (it waits for the
    hold, and resumes where it stood when the hold ends)."""
    if e.get("held_by"):
        return f"held by {e['held_by']}"
    return f"in {age(now, e['next_step_at'])}" if e["next_step_at"] > now else "due now"


def next_escalation(escalations: Iterable[Mapping], now: dt.datetime) -> tuple[str, str] | None:
    """The next step of a running escalation and when it goes: ("step 2 of default_critical", "in 4m")."""
    for e in escalations:
        if not e["finished_at"] and e["next_step_at"]:
            return f"step {e['next_index'] + 1} of {e['policy_name']}", escalation_due(e, now)
    return None


def parse_matchers(text: str) -> list[dict[str, str]]:
    """Matchers as Alertmanager writes them, one per line or separated by commas, optionally in braces:
    `alert_type="deploy_check", labels.env=~"prod|staging"`. Values may be quoted; the database checks them again
    when the silence is saved (the preview asks it too)."""
    matchers = []
    for part in _split_outside_quotes(text):
        part = part.strip()
        if not part:
            continue
        match = re.match(r"^([^=!~\s]+)\s*(=~|!~|!=|=)\s*(.*)$", part, re.DOTALL)
        if match:
            name, op, value = match.groups()
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            part = f"{name}{op}{value}"
        matchers.append(parse_matcher(part))
    if not matchers:
        raise ValueError("give at least one matcher, e.g. alert_type=\"deploy_check\"")
    return matchers


def _split_outside_quotes(text: str) -> list[str]:
    parts, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and quoted:
            current.append(char)
            escaped = True
        elif char == '"':
            quoted = not quoted
            current.append(char)
        elif char in ",\n{}" and not quoted:  # braces: Alertmanager's {a="x", b="y"}
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def format_matchers(matchers: Iterable[Mapping[str, str]]) -> str:
    """Back to the form people type: one per line, values quoted."""
    return "\n".join(f'{m["field"]}{m["op"]}"' + m["value"].replace("\\", "\\\\").replace('"', '\\"') + '"'
                     for m in matchers)


def silence_state(silence: Mapping[str, object], now: dt.datetime) -> str:
    if silence["expired_at"] or silence["ends_at"] <= now:
        return "expired"
    return "pending" if silence["starts_at"] > now else "active"


SLA_WINDOWS = (("24 h", 24), ("7 d", 168), ("30 d", 720))
SLA_DIMENSIONS = ("alert_type", "severity", "provider")
RATE_METRICS = ("false_positive_rate", "provider_success_rate", "provider_first_attempt_success_rate")


def figure(value: object, unit: str | None) -> str:
    """An SLA figure as people read it: durations in s, min or h; rates in percent."""
    if value is None:
        return "–"
    number = float(value)
    if unit in ("ratio", "rate") or (unit is None and number <= 1):
        return f"{number * 100:.1f}%"
    if number < 120:
        return f"{number:.1f} s" if number < 10 else f"{number:.0f} s"
    if number < 7200:
        return f"{number / 60:.1f} min"
    return f"{number / 3600:.1f} h"


@dataclass(frozen=True)
class Chart:
    """A line chart drawn by the server as SVG: one polyline per series, in a viewBox of width x height."""

    width: int
    height: int
    series: list[tuple[str, str]]  # (name, "x,y x,y ...")
    maximum: str  # the top of the y axis, as a figure
    first: str
    last: str


def chart(days: list[dt.datetime], series: Mapping[str, list[float | None]], unit: str | None,
          width: int = 600, height: int = 160) -> Chart:
    """Points for each series over `days`; a day without samples leaves a gap rather than a false zero."""
    values = [v for points in series.values() for v in points if v is not None]
    top = max(values) if values else 1.0
    top = top or 1.0
    step = width / max(len(days) - 1, 1)
    drawn = []
    for name, points in series.items():
        coordinates = [f"{round(i * step, 1)},{round(height - (v / top) * height, 1)}"
                       for i, v in enumerate(points) if v is not None]
        drawn.append((name, " ".join(coordinates)))
    return Chart(width, height, drawn, figure(top, unit), f"{days[0]:%b %d}" if days else "",
                 f"{days[-1]:%b %d}" if days else "")


def daily_charts(rows: Iterable[Mapping[str, object]]) -> dict[str, Chart]:
    """The 30-day charts of the SLA page: p50 and p95 of MTTD, MTTA and MTTR, and the false-positive rate."""
    days = sorted({row["day"] for row in rows})
    by = {(row["day"], row["metric"]): row for row in rows}
    charts = {}
    for metric in ("mttd", "mtta", "mttr"):
        unit = next((row["unit"] for row in rows if row["metric"] == metric), "seconds")
        charts[metric] = chart(days, {
            "p50": [_number(by.get((day, metric), {}).get("p50")) for day in days],
            "p95": [_number(by.get((day, metric), {}).get("p95")) for day in days]}, unit)
    charts["false_positive_rate"] = chart(days, {"rate": [
        _number(by.get((day, "false_positive_rate"), {}).get("mean")) for day in days]}, "ratio")
    return charts


def _number(value: object) -> float | None:
    return None if value is None else float(value)


def rate(succeeded: int, attempts: int) -> str:
    return f"{succeeded / attempts * 100:.1f}%" if attempts else "–"


def csv_text(header: list[str], rows: Iterable[Iterable[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        # a cell a spreadsheet would run as a formula is quoted as text
        writer.writerow(["'" + str(v) if isinstance(v, str) and v[:1] in ("=", "+", "-", "@") else v for v in row])
    return out.getvalue()


def parse_local_time(text: str, now: dt.datetime) -> dt.datetime:
    """A time typed in a form (`2026-12-05T14:30`, the browser's datetime-local, taken as UTC), or `now`."""
    text = text.strip()
    if not text or text == "now":
        return now
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text[:50]!r} is not a time like 2026-12-05T14:30") from None
    return bounded_time(parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC), f"the time {text[:50]!r}")


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def window_when(window: Mapping[str, object]) -> str:
    """When a maintenance window holds, in its own time zone: `Sat Sun 02:00 for 04:00:00 (Europe/Berlin)`."""
    if window["starts_at"]:
        return f"{window['starts_at']:%Y-%m-%d %H:%M} to {window['ends_at']:%Y-%m-%d %H:%M} UTC"
    days = " ".join(WEEKDAYS[d - 1] for d in sorted(window["days_of_week"] or []))
    return f"{days} {str(window['start_time'])[:5]} for {window['duration']} ({window['time_zone']})"


def window_from_form(form: Mapping[str, object]) -> dict[str, object]:
    """A maintenance window as the editor's form gives it: one-off (from, until) or weekly (days, at, for)."""
    def text(name: str) -> str:
        value = form.get(name, "")
        return (value[0] if isinstance(value, list) else str(value)).strip()

    days = form.get("days", [])
    days = [days] if isinstance(days, str) else list(days)
    window: dict[str, object] = {"name": text("name"), "matchers": parse_matchers(text("matchers")),
                                 "time_zone": text("time_zone") or "UTC", "comment": text("comment"),
                                 "starts_at": None, "ends_at": None, "days_of_week": None, "start_time": None,
                                 "duration": None}
    if text("kind") == "weekly":
        if not days:
            raise ValueError("a weekly window needs at least one day")
        days_of_week = sorted({whole_number(d, "a day of the week", 1, 7) for d in days})
        if not re.fullmatch(r"([01]?[0-9]|2[0-3]):[0-5][0-9]", text("start_time")):
            raise ValueError("a weekly window starts at a time like 02:00")
        window.update(days_of_week=days_of_week, start_time=text("start_time"),
                      duration=parse_duration(text("duration")))
    else:
        try:
            zone = zoneinfo.ZoneInfo(str(window["time_zone"]))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{window['time_zone']!r} is not a time zone, e.g. Europe/Berlin") from None
        try:
            starts, ends = dt.datetime.fromisoformat(text("starts_at")), dt.datetime.fromisoformat(text("ends_at"))
        except ValueError:
            raise ValueError("a one-off window needs a start and an end, like 2026-12-05T22:00") from None
        # typed on the window's own clock
        window.update(starts_at=bounded_time(starts if starts.tzinfo else starts.replace(tzinfo=zone), "the start"),
                      ends_at=bounded_time(ends if ends.tzinfo else ends.replace(tzinfo=zone), "the end"))
    return window


def channel_settings(kind: str, text: str) -> dict[str, object]:
    """A channel's settings as an admin typed them (JSON), checked against what its kind takes
    (dispatcher/providers/kinds.py), so a typo is refused here rather than skipping the channel's deliveries."""
    try:
        settings = json.loads(text or "{}")
    except json.JSONDecodeError as error:
        raise ValueError(f"settings are not JSON: {error.msg} at line {error.lineno}") from None
    except RecursionError:
        raise ValueError("settings are nested too deeply") from None
    if not isinstance(settings, dict):
        raise ValueError("settings are a JSON object, e.g. {\"label\": \"#payments\"}")
    known = KINDS[kind].settings if kind in KINDS else {}
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ValueError(f"a {kind} channel takes no setting {', '.join(unknown)} "
                         f"(it takes: {', '.join(known) or 'none'})")
    return settings
