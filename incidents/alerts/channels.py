"""Delivery channels: one protocol with one method. Webhook (HMAC-signed CAP XML), email
(SMTP, every language in one message) and ``log`` — the reference implementation an SMS
gateway or a social-media poster follows: a class with ``send`` registered in ``channels``."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol

import aiosmtplib
import httpx
import structlog

from cad.settings import Settings

log = structlog.get_logger("incidents.alerts")
SIGNATURE_HEADER = "X-CAP-Signature"
WEBHOOK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Message:
    """What a channel delivers: the published CAP message and its parts."""
    identifier: str
    msg_type: str
    cap_xml: str
    infos: list[dict[str, Any]]


class Channel(Protocol):
    async def send(self, *, message: Message, target: str, secret: str | None) -> None:
        """Deliver or raise (any exception is a failed attempt, retried with backoff)."""


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookChannel:
    async def send(self, *, message: Message, target: str, secret: str | None) -> None:
        body = message.cap_xml.encode()
        headers = {"Content-Type": "application/cap+xml; charset=utf-8",
                   "X-CAP-Identifier": message.identifier}
        if secret:
            headers[SIGNATURE_HEADER] = signature(secret, body)
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S) as client:
            r = await client.post(target, content=body, headers=headers)
        if r.status_code >= 300:
            raise RuntimeError(f"webhook answered {r.status_code}")


class EmailChannel:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, *, message: Message, target: str, secret: str | None) -> None:
        if self.settings.smtp_host is None:
            raise RuntimeError("no SMTP server configured (CAD_SMTP_HOST)")
        mail = EmailMessage()
        mail["From"] = self.settings.alert_email_from
        mail["To"] = target
        mail["Subject"] = " / ".join(i["headline"] for i in message.infos)
        parts = []
        for info in message.infos:
            text = f"[{info['language']}] {info['headline']}\n\n{info['description']}"
            if info.get("instruction"):
                text += f"\n\n{info['instruction']}"
            parts.append(text)
        mail.set_content("\n\n----\n\n".join(parts))
        mail.add_attachment(message.cap_xml.encode(), maintype="application",
                            subtype="cap+xml", filename=f"{message.identifier}.xml")
        await aiosmtplib.send(mail, hostname=self.settings.smtp_host,
                              port=self.settings.smtp_port)   # STARTTLS when offered


class LogChannel:
    """Writes the delivery to the structured log: the reference implementation."""

    async def send(self, *, message: Message, target: str, secret: str | None) -> None:
        log.info("alert_delivered", channel="log", target=target,
                 identifier=message.identifier, msg_type=message.msg_type,
                 languages=[i["language"] for i in message.infos])


def channels(settings: Settings) -> dict[str, Channel]:
    return {"webhook": WebhookChannel(), "email": EmailChannel(settings), "log": LogChannel()}
