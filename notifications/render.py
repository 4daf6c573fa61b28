"""What a delivery says: the signed webhook body, the chat message, the email. Pure."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from email.message import EmailMessage
from typing import Any

import msgspec

from kernel import isoformat
from notifications.model import SEVERITIES, Channel, Delivery, Notification, NotificationKind

_encode = msgspec.json.Encoder().encode


def delivery_kind(items: list[Notification]) -> str:
    if len(items) == 1:
        return items[0].kind.value
    return "digest"


def webhook_body(channel: Channel, delivery: Delivery, items: list[Notification], now: float) -> bytes:
    """`{"delivery_id", "channel", "kind": "alert"|"digest"|"report", "sent_at", "count", "items": [...]}`."""
    return _encode(
        {
            "delivery_id": delivery.id,
            "channel": channel.id,
            "kind": delivery_kind(items),
            "sent_at": isoformat(now),
            "count": len(items),
            "items": [i.payload for i in items],
        }
    )


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Fleethub-Signature header: `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>." + body>`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes) -> bool:
    """Check a signature header against a body (what a receiver does; the tests use it)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        expected = sign(secret, int(parts["t"]), body)
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(expected, header)


def _line(payload: dict[str, Any]) -> str:
    event = payload.get("event", "raised")
    return f"[{payload.get('severity', '?')}] {payload.get('message', '')} ({payload.get('rule')}, {event})"


def summary(items: list[Notification]) -> str:
    """One line: what a single notification says, or how many alerts a digest holds by severity."""
    if len(items) == 1:
        item = items[0]
        if item.kind is NotificationKind.REPORT:
            return str(item.payload.get("title", "report"))
        return _line(item.payload)
    counts = Counter(i.severity for i in items)
    by = ", ".join(f"{counts[s]} {s}" for s in reversed(SEVERITIES) if counts[s])
    return f"{len(items)} alerts ({by})"


def text(items: list[Notification]) -> str:
    """The plain text of a delivery: a digest lists every alert, a report its summary lines."""
    if len(items) == 1 and items[0].kind is NotificationKind.REPORT:
        return str(items[0].payload.get("text", items[0].payload.get("title", "")))
    lines = [summary(items), ""] if len(items) > 1 else []
    for item in items:
        p = item.payload
        lines.append(f"{_line(p)} vehicle {p.get('vehicle_id')} fleet {p.get('fleet')} at {p.get('raised_at')}")
    return "\n".join(lines)


def chat_body(items: list[Notification]) -> bytes:
    """A Slack- and Teams-compatible incoming-webhook body: `{"text": "..."}`."""
    return _encode({"text": f"fleethub: {summary(items)}\n" + text(items)})


def email_message(sender: str, channel: Channel, delivery: Delivery, items: list[Notification]) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(channel.body.to)
    kind = delivery_kind(items)
    message["Subject"] = f"[fleethub] {'digest: ' if kind == 'digest' else ''}{summary(items)}"[:240]
    # Receivers and mail clients can tell a repeated attempt from a new message.
    message["Message-ID"] = f"<{delivery.id}@fleethub>"
    message["X-Fleethub-Delivery"] = delivery.id
    message.set_content(text(items))
    if kind == "report":
        payload = items[0].payload
        csv_text = payload.get("csv")
        if isinstance(csv_text, str):
            message.add_attachment(
                csv_text.encode(), maintype="text", subtype="csv", filename=str(payload.get("filename", "report.csv"))
            )
    return message
