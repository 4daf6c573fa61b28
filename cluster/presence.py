"""Presence from the broker itself: EMQX's client events under `$SYS` (`cluster.presence = "emqx"`).

EMQX publishes `$SYS/brokers/{node}/clients/{clientid}/connected` and `.../disconnected`
for every client (on by default), and `.../subscribed` when `sys_event_messages`
`client_subscribed` is enabled. The payloads are JSON with `clientid` and, for a
disconnect, a `reason`. A vehicle's client id is its vehicle id (docs/mqtt.md), so these
become the same pipeline items as the birth/Last-Will convention; the vehicles then need
not publish a status themselves. Client ids that are not vehicle ids (workers, users,
tools) are ignored.
"""

from __future__ import annotations

import re

import msgspec

from twin import DisconnectReason, Inbound, MessageKind

_EVENT = re.compile(r"^\$SYS/brokers/[^/]+/clients/(?P<cid>[^/]+)/(?P<event>connected|disconnected|subscribed)$")
_VEHICLE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_COMMANDS = re.compile(r"^vehicles/(?P<vid>[A-Za-z0-9_.-]{1,64})/(?:#|commands/(?:\+|#))$")
# The old connection of a client that connected again: the vehicle is not gone.
_REPLACED = frozenset({"takenover", "takeovered", "discarded"})
_CLEAN = frozenset({"normal"})


class ClientEvent(msgspec.Struct, frozen=True):
    """The fields fleethub reads of an EMQX client event (others are ignored)."""

    clientid: str | None = None
    reason: str | None = None
    topic: str | None = None


_decode = msgspec.json.Decoder(ClientEvent)


def is_event(topic: str) -> bool:
    return topic.startswith("$SYS/brokers/")


def emqx_event(topic: str, payload: bytes, qos: int, now: float) -> list[Inbound]:
    """The pipeline items an EMQX client event stands for (none: not a vehicle's, or not understood)."""
    match = _EVENT.match(topic)
    if match is None:
        return []
    try:
        event = _decode.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return []
    vid = event.clientid or match["cid"]
    if _VEHICLE.match(vid) is None:
        return []
    kind = match["event"]
    if kind == "connected":
        return [Inbound(vid, MessageKind.CONNECTED, b"", now, qos)]
    if kind == "disconnected":
        if (event.reason or "") in _REPLACED:
            return []
        reason = DisconnectReason.CLEAN if (event.reason or "") in _CLEAN else DisconnectReason.CONNECTION_LOST
        return [Inbound(vid, MessageKind.DISCONNECTED, b"", now, qos, extra={"reason": reason.value})]
    # Subscribed: only the vehicle's own command topic makes it ready for commands.
    commands = _COMMANDS.match(event.topic or "")
    if commands is None or commands["vid"] != vid:
        return []
    return [Inbound(vid, MessageKind.SUBSCRIBED, b"", now, qos, extra={"commands": "1"})]
