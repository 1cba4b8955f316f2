"""Structured logs: one line per event, as `key=value` text or as JSON."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Iterable

from dispatcher.redact import redact

LOGGER = logging.getLogger("pgalert")


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool, secrets: Iterable[str]):
        super().__init__()
        self.as_json = as_json
        self.secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        if self.as_json:
            line = json.dumps(fields, default=str, ensure_ascii=False)
        else:
            head = f"{fields.pop('ts')} {fields.pop('level'):<7} {fields.pop('event')}"
            line = " ".join([head, *(f"{k}={_text(v)}" for k, v in fields.items())])
        return redact(line, self.secrets)


def _text(value: object) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or "=" in text or not text) else text


def configure(log_format: str = "text", level: str = "info", secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(log_format == "json", secrets))
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level.upper())
    LOGGER.propagate = False


def add_secrets(secrets: Iterable[str]) -> None:
    """More strings to mask in every line from now on (a channel's secrets, read when its row is)."""
    for handler in LOGGER.handlers:
        if isinstance(handler.formatter, _Formatter):
            handler.formatter.secrets = tuple(dict.fromkeys((*handler.formatter.secrets, *secrets)))


def log(level: int, event: str, **fields: object) -> None:
    LOGGER.log(level, event, extra={"fields": fields})


def info(event: str, **fields: object) -> None:
    log(logging.INFO, event, **fields)


def warning(event: str, **fields: object) -> None:
    log(logging.WARNING, event, **fields)


def error(event: str, **fields: object) -> None:
    log(logging.ERROR, event, **fields)
