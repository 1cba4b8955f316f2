"""Numbers, ids and times as a request gives them, read strictly: ASCII digits only (`str.isdigit` and `int`
accept `²`, `٣` and `１`, and `int` a sign, spaces and underscores), within ranges the database and Python's
datetime can hold. A value that is not one raises ValueError with a sentence a person can act on, so `pgalert
serve` answers 4xx with a reason, never 5xx. No I/O."""

from __future__ import annotations

import datetime as dt
import re

ID_MAX = 2**63 - 1  # ids are bigint
# Times people and providers give lie in this range; outside it a time is a typo or an attack, and at its edges
# a time zone's offset would carry it past what Python's datetime reads back (year 1 to 9999).
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)
_DIGITS = re.compile(r"[0-9]{1,19}")


def whole_number(text: object, what: str, low: int, high: int) -> int:
    """`text` as an int from low to high, written in ASCII digits and nothing else."""
    if isinstance(text, str) and _DIGITS.fullmatch(text) and low <= int(text) <= high:
        return int(text)
    raise ValueError(f"{what} is a whole number from {low} to {high}")


def row_id(text: object, what: str) -> int:
    """The id of a row: 1 to the largest bigint."""
    return whole_number(text, what, 1, ID_MAX)


def bounded_time(value: dt.datetime, what: str) -> dt.datetime:
    """`value` (with a time zone) when it lies between 1970 and 9000."""
    if not EARLIEST <= value <= LATEST:
        raise ValueError(f"{what} is not between {EARLIEST.year} and {LATEST.year}")
    return value
