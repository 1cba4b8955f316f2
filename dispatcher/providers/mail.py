"""Email over SMTP, for teams that page by mail: one message per alert, and its acknowledge, resolve and pages as
replies in the same thread.

Threading needs no stored state: the alert's message has the Message-ID `<provider_key@domain>` (the provider
key is stable per alert and installation), and every follow-up names it in In-Reply-To and References. A retried
send keeps its Message-ID, so a mail client that drops duplicates by Message-ID shows it once; SMTP itself has no
idempotency, so a message whose acceptance was lost in transit can arrive twice.

The reply code judges the attempt (RFC 5321): 2xx accepted, 4xx try again, 5xx final. The transport is the
dispatcher's libcurl loop (dispatcher.http), which speaks SMTP with STARTTLS or implicit TLS and AUTH.
"""

from __future__ import annotations

import email.policy
import email.utils
import html
from dataclasses import dataclass, field
from email.message import EmailMessage

from dispatcher.providers.base import (
    Delivery,
    HttpResponse,
    MailRequest,
    OneAtATime,
    Verdict,
    alert_links,
    details_of,
    response_text,
    truncate,
    where,
    who,
)

SUBJECT_MAX = 200
TEXT_MAX = 20_000  # the alert's message; the whole mail stays far below the 10 MB servers commonly take
DETAILS_MAX = 40


@dataclass(frozen=True)
class Mail(OneAtATime):
    smtp_url: str
    sender: str
    recipients: tuple[str, ...]
    username: str = ""
    password: str = field(default="", repr=False)
    starttls_required: bool = True
    name: str = "email"

    def secrets(self) -> tuple[str, ...]:
        return (self.password,) if self.password else ()

    def build(self, delivery: Delivery) -> MailRequest | None:
        recipients = recipients_for(delivery, self.recipients)
        message = build_message(delivery, self.sender, recipients)
        if message is None:
            return None
        return MailRequest(self.smtp_url, email.utils.parseaddr(self.sender)[1], recipients,
                           message.as_bytes(policy=email.policy.SMTP), self.username, self.password,
                           self.starttls_required)

    def judge(self, delivery: Delivery, response: HttpResponse) -> Verdict:
        code = response.status
        if 200 <= code < 300:
            return Verdict("succeeded", reference=thread_id(delivery.provider_key, self.sender))
        detail = f"SMTP {code}: {response_text(response)}"
        return Verdict("retry" if 400 <= code < 500 else "failed", detail)


def sender_domain(sender: str) -> str:
    return email.utils.parseaddr(sender)[1].rpartition("@")[2] or "pgalert.invalid"


def thread_id(provider_key: str, sender: str) -> str:
    """The Message-ID of the alert's first message, which every follow-up replies to."""
    return f"<{provider_key}@{sender_domain(sender)}>"


def recipients_for(delivery: Delivery, channel_recipients: tuple[str, ...]) -> tuple[str, ...]:
    """A page goes to the person on call when the rotation knows their address; the rest to the channel's list."""
    address = str(delivery.context.get("email") or "").strip() if delivery.action == "notify" else ""
    if address and "@" in address and not any(c in address for c in ",<>\r\n "):
        return (address,)
    return channel_recipients


def build_message(delivery: Delivery, sender: str, recipients: tuple[str, ...]) -> EmailMessage | None:
    """The message for one delivery: plain text and the same as HTML, threaded on the alert."""
    alert = delivery.alert
    domain = sender_domain(sender)
    thread = thread_id(delivery.provider_key, sender)
    label = f"[{alert.get('priority', '')} {alert['severity']}]".replace("[ ", "[")
    # a header is one line: a title with a line break in it must neither fail the message nor add a header
    subject = truncate(" ".join(f"{label} {alert['title']}".split()), SUBJECT_MAX)
    if delivery.action == "trigger":
        lines, heading = _trigger_lines(alert), alert["title"]
    elif delivery.action in ("acknowledge", "resolve"):
        if delivery.action == "acknowledge":
            heading = f"Acknowledged by {who(delivery)}{where(delivery)}"
        else:
            verb = "Resolved as a false positive" if delivery.context.get("false_positive") else "Resolved"
            heading = f"{verb} by {who(delivery)}{where(delivery)}"
        lines = [("Note", str(delivery.context["note"]))] if delivery.context.get("note") else []
        subject = truncate(f"Re: {subject}", SUBJECT_MAX)
    elif delivery.action == "notify":
        person = str(delivery.context.get("person") or delivery.target)
        reason = str(delivery.context.get("reason") or "you are being paged")
        heading = f"{person}, {reason}"
        lines = _trigger_lines(alert)
        subject = truncate(f"Re: {subject}", SUBJECT_MAX)
    else:
        return None
    message = EmailMessage(policy=email.policy.SMTP)
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = email.utils.formatdate(usegmt=True)
    if delivery.action == "trigger":
        message["Message-ID"] = thread
    else:
        message["Message-ID"] = f"<{delivery.provider_key}.{delivery.delivery_id}@{domain}>"
        message["In-Reply-To"] = thread
        message["References"] = thread
    # RFC 3834: an out-of-office reply to an alert must not come back as mail to the alert address
    message["Auto-Submitted"] = "auto-generated"
    if alert["severity"] == "critical":
        message["Importance"] = "high"
    message["X-Pgalert-Alert-Id"] = str(alert["id"])
    message.set_content(_text(heading, lines, alert))
    message.add_alternative(_html(heading, lines, alert), subtype="html")
    return message



def _trigger_lines(alert: dict) -> list[tuple[str, str]]:
    lines = [("Severity", f"{alert['severity']} ({alert.get('priority', '')})"),
             ("Type", truncate(alert["alert_type"], 200))]
    if alert.get("source"):
        lines.append(("Source", truncate(alert["source"], 500)))
    if (alert.get("occurrence_count") or 1) > 1:
        lines.append(("Occurrences", str(alert["occurrence_count"])))
    lines.append(("Dedup key", truncate(str(alert.get("dedup_key")), 500)))
    if alert.get("message"):
        lines.append(("Message", truncate(alert["message"], TEXT_MAX)))
    for key, value in list(details_of(alert).items())[:DETAILS_MAX]:
        if key not in ("runbook_url", "links"):
            lines.append((truncate(str(key), 100), truncate(str(value), 1000)))
    return lines


def _text(heading: str, lines: list[tuple[str, str]], alert: dict) -> str:
    parts = [heading, ""]
    parts += [f"{name}: {value}" for name, value in lines]
    parts += [f"{link['text']}: {link['href']}" for link in alert_links(alert)]
    parts += ["", f"pgalert alert #{alert['id']}"]
    return "\n".join(parts) + "\n"


def _html(heading: str, lines: list[tuple[str, str]], alert: dict) -> str:
    e = html.escape
    rows = "".join(f"<tr><th align=\"left\" valign=\"top\">{e(name)}</th><td style=\"white-space:pre-wrap\">"
                   f"{e(value)}</td></tr>" for name, value in lines)
    links = "".join(f"<li><a href=\"{e(link['href'])}\">{e(link['text'])}</a></li>" for link in alert_links(alert))
    return (f"<!DOCTYPE html><html><body><h2>{e(heading)}</h2><table cellpadding=\"4\">{rows}</table>"
            + (f"<ul>{links}</ul>" if links else "")
            + f"<p style=\"color:#666\">pgalert alert #{e(str(alert['id']))}</p></body></html>\n")
