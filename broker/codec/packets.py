"""The packets of MQTT 3.1, 3.1.1 and 5 as plain Structs; `version` decides what goes on the wire.

One shape serves all three versions: fields a version lacks (properties, reason codes of
acknowledgements) keep their defaults and are neither written nor read for it.
"""

from __future__ import annotations

import enum

import msgspec

from broker.codec.reasons import Reason


class Version(enum.IntEnum):
    """The protocol level byte of CONNECT."""

    V31 = 3
    V311 = 4
    V5 = 5


class PacketType(enum.IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class Properties(msgspec.Struct, omit_defaults=True):
    """MQTT 5 properties (section 2.2.2); None is "absent". Unused by 3.1 and 3.1.1."""

    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_identifiers: list[int] = msgspec.field(default_factory=list)
    session_expiry_interval: int | None = None
    assigned_client_identifier: str | None = None
    server_keep_alive: int | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    request_problem_information: int | None = None
    will_delay_interval: int | None = None
    request_response_information: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int | None = None
    topic_alias: int | None = None
    maximum_qos: int | None = None
    retain_available: int | None = None
    user_properties: list[tuple[str, str]] = msgspec.field(default_factory=list)
    maximum_packet_size: int | None = None
    wildcard_subscription_available: int | None = None
    subscription_identifier_available: int | None = None
    shared_subscription_available: int | None = None


class Will(msgspec.Struct):
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties = msgspec.field(default_factory=Properties)


class Connect(msgspec.Struct):
    client_id: str
    version: Version = Version.V311
    clean_start: bool = True
    keep_alive: int = 0
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = msgspec.field(default_factory=Properties)


class Connack(msgspec.Struct):
    reason: Reason = Reason.SUCCESS
    session_present: bool = False
    properties: Properties = msgspec.field(default_factory=Properties)


class Publish(msgspec.Struct):
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int = 0
    properties: Properties = msgspec.field(default_factory=Properties)


class Ack(msgspec.Struct):
    """PUBACK, PUBREC, PUBREL or PUBCOMP."""

    kind: PacketType
    packet_id: int
    reason: Reason = Reason.SUCCESS
    properties: Properties = msgspec.field(default_factory=Properties)


class RetainHandling(enum.IntEnum):
    SEND_ON_SUBSCRIBE = 0
    SEND_IF_NEW = 1
    NEVER = 2


class Subscription(msgspec.Struct):
    """One filter of a SUBSCRIBE with its options (only `qos` exists before MQTT 5)."""

    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: RetainHandling = RetainHandling.SEND_ON_SUBSCRIBE


class Subscribe(msgspec.Struct):
    packet_id: int
    subscriptions: list[Subscription]
    properties: Properties = msgspec.field(default_factory=Properties)


class Suback(msgspec.Struct):
    packet_id: int
    reasons: list[Reason]
    properties: Properties = msgspec.field(default_factory=Properties)


class Unsubscribe(msgspec.Struct):
    packet_id: int
    topic_filters: list[str]
    properties: Properties = msgspec.field(default_factory=Properties)


class Unsuback(msgspec.Struct):
    """`reasons` are written for MQTT 5 only (3.1.1's UNSUBACK carries just the packet id)."""

    packet_id: int
    reasons: list[Reason] = msgspec.field(default_factory=list)
    properties: Properties = msgspec.field(default_factory=Properties)


class PingReq(msgspec.Struct):
    pass


class PingResp(msgspec.Struct):
    pass


class Disconnect(msgspec.Struct):
    reason: Reason = Reason.SUCCESS
    properties: Properties = msgspec.field(default_factory=Properties)


class Auth(msgspec.Struct):
    reason: Reason = Reason.SUCCESS
    properties: Properties = msgspec.field(default_factory=Properties)


Packet = (
    Connect
    | Connack
    | Publish
    | Ack
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | PingReq
    | PingResp
    | Disconnect
    | Auth
)
