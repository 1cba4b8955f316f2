"""Matchers and durations as people type them on the command line, turned into what the database stores.

`alert_type=deploy_check`, `labels.env=~prod|staging`, `severity!=info`, `source!~test-.*`: the same four
operators as Alertmanager's matchers. Checked again by the database when saved (sql/matchers.sql).
"""

from __future__ import annotations

import datetime as dt
import re

FIELD = r"alert_type|severity|source|dedup_key|(?:labels|details)\.[A-Za-z0-9_.:-]{1,100}"
MATCHER = re.compile(rf"^({FIELD})(=~|!~|!=|=)(.*)$", re.DOTALL)
# ASCII digits only (\d takes any script's), a few of them: a huge count would overflow timedelta
DURATION = re.compile(r"(?:([0-9]{1,6})d)?(?:([0-9]{1,8})h)?(?:([0-9]{1,9})m)?(?:([0-9]{1,11})s)?")
DURATION_MAX = dt.timedelta(days=3650)  # ten years: longer than any silence, override or window is meant
REGEX_MAX = 1000  # characters, as the database checks (sql/matchers.sql); longer is refused before compiling


def parse_matcher(text: str) -> dict[str, str]:
    match = MATCHER.match(text.strip())
    if not match:
        raise ValueError(f"matcher {text!r} is not FIELD OP VALUE: FIELD is alert_type, severity, source, dedup_key, "
                         "labels.NAME or details.NAME; OP is =, !=, =~ (regex) or !~")
    field, op, value = match.groups()
    if op in ("=~", "!~"):
        if len(value) > REGEX_MAX:
            raise ValueError(f"matcher {field}{op}...: the regex has {len(value)} characters; at most {REGEX_MAX}")
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"matcher {text!r}: the regex does not compile ({error})") from None
        except (RecursionError, OverflowError):  # nested too deep for the compiler, or a repeat count too large
            raise ValueError(f"matcher {field}{op}...: the regex is nested too deeply or repeats too often") from None
    return {"field": field, "op": op, "value": value}


def parse_duration(text: str) -> dt.timedelta:
    """`2h`, `90m`, `1d12h`, `45s`: longer than zero, at most DURATION_MAX."""
    match = DURATION.fullmatch(text.strip())
    if not text.strip() or not match:
        raise ValueError(f"duration {text[:50]!r} is not like 2h, 90m or 1d12h")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    duration = dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if duration <= dt.timedelta(0):
        raise ValueError(f"duration {text!r} must be longer than zero")
    if duration > DURATION_MAX:
        raise ValueError(f"duration {text[:50]!r} is longer than {DURATION_MAX.days}d")
    return duration
