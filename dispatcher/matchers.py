"""Matchers and durations as people type them on the command line, turned into what the database stores.

`alert_type=deploy_check`, `labels.env=~prod|staging`, `severity!=info`, `source!~test-.*`: the same four
operators as Alertmanager's matchers. Checked again by the database when saved (sql/hygiene.sql).
"""

from __future__ import annotations

import datetime as dt
import re

FIELD = r"alert_type|severity|source|dedup_key|(?:labels|details)\.[A-Za-z0-9_.:-]{1,100}"
MATCHER = re.compile(rf"^({FIELD})(=~|!~|!=|=)(.*)$", re.DOTALL)
DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_matcher(text: str) -> dict[str, str]:
    match = MATCHER.match(text.strip())
    if not match:
        raise ValueError(f"matcher {text!r} is not FIELD OP VALUE: FIELD is alert_type, severity, source, dedup_key, "
                         "labels.NAME or details.NAME; OP is =, !=, =~ (regex) or !~")
    field, op, value = match.groups()
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"matcher {text!r}: the regex does not compile ({error})") from None
    return {"field": field, "op": op, "value": value}


def parse_duration(text: str) -> dt.timedelta:
    """`2h`, `90m`, `1d12h`, `45s`."""
    match = DURATION.match(text.strip())
    if not text.strip() or not match:
        raise ValueError(f"duration {text!r} is not like 2h, 90m or 1d12h")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    duration = dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if duration <= dt.timedelta(0):
        raise ValueError(f"duration {text!r} must be longer than zero")
    return duration
