"""Jira Service Management Operations, Opsgenie's successor: create, acknowledge and close by alias over its
integration API (https://api.atlassian.com/jsm/ops/integration, `Authorization: GenieKey <key>`).

Atlassian kept Opsgenie's alert contract (asynchronous, 202 with a requestId; the same fields and limits), so the
Opsgenie module builds and judges the requests; only the address, the key and the name differ.
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.providers.opsgenie import Opsgenie

JSM_API_URL = "https://api.atlassian.com/jsm/ops/integration"


@dataclass(frozen=True)
class JiraServiceManagement(Opsgenie):
    api_url: str = JSM_API_URL
    name: str = "jsm"
