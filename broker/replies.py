"""What the broker answers, in MQTT 5 reason codes: to refusals, logins, the hub's own disconnects.

And which properties a client's PUBLISH may carry at all.
"""

from __future__ import annotations

from typing import Final

from broker.codec import Properties, Reason
from broker.topics import Refusal
from twin import DisconnectReason

# What a refusal says in an MQTT 5 PUBACK/PUBREC (3.1.1 can only acknowledge).
REFUSAL_REASON: Final = {
    Refusal.PAYLOAD_TOO_LARGE: Reason.QUOTA_EXCEEDED,
    Refusal.RATE_LIMITED: Reason.QUOTA_EXCEEDED,
    Refusal.NOT_AUTHORIZED: Reason.NOT_AUTHORIZED,
    Refusal.TOPIC_NOT_ALLOWED: Reason.NOT_AUTHORIZED,
    Refusal.UNKNOWN_TOPIC: Reason.TOPIC_NAME_INVALID,
}
# The MQTT 5 reason a server-sent DISCONNECT gives for each way the hub ends a connection.
DISCONNECT_REASON: Final = {
    DisconnectReason.TAKEN_OVER: Reason.SESSION_TAKEN_OVER,
    DisconnectReason.KEEPALIVE_TIMEOUT: Reason.KEEP_ALIVE_TIMEOUT,
    DisconnectReason.SHUTDOWN: Reason.SERVER_SHUTTING_DOWN,
    DisconnectReason.REVOKED: Reason.ADMINISTRATIVE_ACTION,
    DisconnectReason.PROTOCOL_ERROR: Reason.PROTOCOL_ERROR,
    DisconnectReason.SLOW_CONSUMER: Reason.QUOTA_EXCEEDED,
}
LOGIN_REASON: Final = {
    "bad_credentials": Reason.BAD_USERNAME_OR_PASSWORD,
    "connect_rate_ip": Reason.CONNECTION_RATE_EXCEEDED,
    "connect_rate_client": Reason.CONNECTION_RATE_EXCEEDED,
    "backoff": Reason.BANNED,
    "client_id": Reason.CLIENT_IDENTIFIER_NOT_VALID,
}


# The properties a client's PUBLISH may carry (MQTT 5 3.3.2.3); the others belong to other packets or to the server.
PUBLISH_PROPERTIES: Final = frozenset(
    {
        "payload_format_indicator",
        "message_expiry_interval",
        "content_type",
        "response_topic",
        "correlation_data",
        "topic_alias",
        "user_properties",
    }
)
_FOREIGNPUBLISH_PROPERTIES: Final = tuple(f for f in Properties.__struct_fields__ if f not in PUBLISH_PROPERTIES)


def foreign_publish_property(props: Properties) -> str:
    """The first property a client may not put in a PUBLISH, or ""."""
    for name in _FOREIGNPUBLISH_PROPERTIES:
        if getattr(props, name):
            return name
    return ""
