"""How deliveries leave the hub: HTTP for webhooks and chat, SMTP for email."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time
from email.message import EmailMessage
from typing import Protocol

import httpx

from kernel import FleethubError
from notifications.model import Channel, ChannelKind, Delivery, Notification
from notifications.render import chat_body, email_message, sign, webhook_body
from notifications.settings import NotificationSettings


class DeliveryFailed(FleethubError):
    """An attempt failed; the delivery is retried later or dead-lettered."""


class Transport(Protocol):
    async def send(self, channel: Channel, delivery: Delivery, items: list[Notification]) -> None:
        """Deliver or raise `DeliveryFailed` saying why."""
        ...

    async def aclose(self) -> None: ...


class HttpTransport:
    """Webhooks (signed JSON) and chat webhooks (Slack/Teams `{"text": ...}`) over one pooled client."""

    def __init__(self, settings: NotificationSettings) -> None:
        self._client = httpx.AsyncClient(timeout=settings.send_timeout_s, follow_redirects=False)

    async def send(self, channel: Channel, delivery: Delivery, items: list[Notification]) -> None:
        url = channel.body.url
        if url is None:
            raise DeliveryFailed(f"channel '{channel.id}' has no url")
        now = time.time()
        headers = {"Content-Type": "application/json", "X-Fleethub-Delivery": delivery.id, "User-Agent": "fleethub"}
        if channel.body.kind is ChannelKind.WEBHOOK:
            body = webhook_body(channel, delivery, items, now)
            if channel.body.secret:
                headers["X-Fleethub-Signature"] = sign(channel.body.secret, int(now), body)
        else:
            body = chat_body(items)
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}"[:500]) from None
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(f"HTTP {response.status_code} from {url}")

    async def aclose(self) -> None:
        await self._client.aclose()


class SmtpTransport:
    """Email through the configured SMTP server; smtplib runs in a worker thread."""

    def __init__(self, settings: NotificationSettings) -> None:
        self.settings = settings

    async def send(self, channel: Channel, delivery: Delivery, items: list[Notification]) -> None:
        if not self.settings.smtp_host:
            raise DeliveryFailed("no SMTP server is configured (notifications.smtp_host)")
        message = email_message(self.settings.smtp_from, channel, delivery, items)
        try:
            await asyncio.to_thread(self._send, message)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}"[:500]) from None

    def _send(self, message: EmailMessage) -> None:
        s = self.settings
        timeout = s.send_timeout_s
        smtp: smtplib.SMTP
        if s.smtp_security == "tls":
            smtp = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=timeout, context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=timeout)
        with smtp:
            if s.smtp_security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password)
            smtp.send_message(message)

    async def aclose(self) -> None:
        return None
