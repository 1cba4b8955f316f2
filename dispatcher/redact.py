"""Secrets never reach a log line, an error message or the database."""

from __future__ import annotations

from collections.abc import Iterable

MASK = "[redacted]"


def redact(text: str | None, secrets: Iterable[str]) -> str | None:
    if text is None:
        return None
    # longest first, so a secret URL is masked whole before its path is
    for secret in sorted((s for s in secrets if s and len(s) >= 2), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
