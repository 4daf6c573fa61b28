"""MQTT 3.1, 3.1.1 and 5 packets: pure functions between bytes and Structs, no I/O.

`decode` takes one packet's first byte and body (framing is the transport's job);
`encode` writes a packet for a connection's version. Any
defect of the input is a `CodecError` carrying the MQTT 5 reason code to answer with.
"""

from broker.codec.decode import decode, decode_properties
from broker.codec.encode import encode, encode_properties, encode_publish
from broker.codec.errors import CodecError, MalformedPacket, PacketTooLarge, ProtocolError, UnsupportedProtocol
from broker.codec.packets import (
    Ack,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    PingReq,
    PingResp,
    Properties,
    Publish,
    RetainHandling,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Version,
    Will,
)
from broker.codec.reasons import Reason
from broker.codec.wire import VARINT_MAX

__all__ = [
    "VARINT_MAX",
    "Ack",
    "Auth",
    "CodecError",
    "Connack",
    "Connect",
    "Disconnect",
    "MalformedPacket",
    "Packet",
    "PacketTooLarge",
    "PacketType",
    "PingReq",
    "PingResp",
    "Properties",
    "ProtocolError",
    "Publish",
    "Reason",
    "RetainHandling",
    "Suback",
    "Subscribe",
    "Subscription",
    "Unsuback",
    "Unsubscribe",
    "UnsupportedProtocol",
    "Version",
    "Will",
    "decode",
    "decode_properties",
    "encode",
    "encode_properties",
    "encode_publish",
]
