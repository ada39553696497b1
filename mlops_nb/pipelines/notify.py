"""Notifiers: a webhook (JSON, optionally Slack's format) and email over SMTP.

A notifier sends one :class:`Message`; it raises on failure and the caller records the
failure (a run never fails because an alert could not be sent). The same notifiers serve
the registry's events through ``ws.notify(notifier, events=[...])``.

>>> Webhook("https://hooks.example/x", slack=True)
<Webhook https://hooks.example/x slack>
>>> Email(["ops@example.com"], host="smtp.example", port=587, starttls=True)
<Email ops@example.com via smtp.example:587 starttls>
"""

from __future__ import annotations

import json
import os
import smtplib
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx

from ..errors import InvalidArgument
from ..events import sign

WHEN = ("success", "failure")


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mimetype: str = "application/octet-stream"


@dataclass(frozen=True)
class Message:
    """What a notifier sends: a subject and text, an HTML body, a JSON payload, files."""

    subject: str
    text: str
    payload: dict[str, Any]
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    failed: bool = False


def _when(on: Sequence[str]) -> tuple[str, ...]:
    items = [on] if isinstance(on, str) else list(on)
    for w in items:
        if w not in WHEN:
            raise InvalidArgument(f"notify on must be 'success' and/or 'failure', got {w!r}")
    return tuple(items)


@dataclass(frozen=True)
class Notifier:
    """Base: ``on`` says which run outcomes are sent ('success', 'failure')."""

    on: tuple[str, ...] = field(default=WHEN, kw_only=True)

    def wants(self, failed: bool) -> bool:
        return ("failure" if failed else "success") in self.on

    def send(self, message: Message) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Webhook(Notifier):
    """POST JSON to ``url``. ``slack=True`` sends Slack's ``{"text": ..., "blocks": ...}``
    (Slack, Mattermost, Teams workflows); with ``secret`` the body is signed like the
    registry's webhooks (``X-Mlops-Signature: sha256=<hmac>``)."""

    url: str = ""
    slack: bool = False
    secret: str | None = None
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise InvalidArgument(
                f"webhook url must start with http:// or https://, got {self.url!r}"
            )
        object.__setattr__(self, "on", _when(self.on))

    def body(self, message: Message) -> dict[str, Any]:
        if not self.slack:
            return message.payload
        return {
            "text": message.subject,
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": message.subject[:150]}},
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f"```{message.text[:2900]}```"},
                },
            ],
        }

    def send(self, message: Message) -> None:
        content = json.dumps(self.body(message), sort_keys=True, default=str).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "mlops-nb"}
        if self.secret:
            headers["X-Mlops-Signature"] = sign(self.secret, content)
        response = httpx.post(self.url, content=content, headers=headers, timeout=self.timeout)
        response.raise_for_status()

    def __repr__(self) -> str:
        return f"<Webhook {self.url}{' slack' if self.slack else ''}>"


def Slack(url: str, *, on: Sequence[str] = WHEN) -> Webhook:
    """A webhook sending Slack's message format (an incoming-webhook URL)."""
    return Webhook(url=url, slack=True, on=tuple(on))


@dataclass(frozen=True)
class Email(Notifier):
    """Send through an SMTP server; ``starttls`` upgrades the connection first. The
    password may be given as the name of an environment variable (``password_env``)."""

    to: Sequence[str] = ()
    host: str = "localhost"
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None
    sender: str = "mlops-nb@localhost"
    timeout: float = 30.0

    def __post_init__(self) -> None:
        to = [self.to] if isinstance(self.to, str) else list(self.to)
        if not to or not all(isinstance(a, str) and "@" in a for a in to):
            raise InvalidArgument(f"email needs recipient addresses, got {self.to!r}")
        object.__setattr__(self, "to", tuple(to))
        object.__setattr__(self, "on", _when(self.on))

    def send(self, message: Message) -> None:
        mail = EmailMessage()
        mail["Subject"] = message.subject
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.to)
        mail.set_content(message.text)
        if message.html:
            mail.add_alternative(message.html, subtype="html")
        for a in message.attachments:
            main, _, sub = a.mimetype.partition("/")
            mail.add_attachment(a.content, maintype=main, subtype=sub, filename=a.filename)
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, os.environ.get(self.password_env or "", ""))
            smtp.send_message(mail)

    def __repr__(self) -> str:
        tls = " starttls" if self.starttls else ""
        return f"<Email {', '.join(self.to)} via {self.host}:{self.port}{tls}>"
