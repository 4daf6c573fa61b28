"""The MQTT codec: every packet survives a round trip in each version, and bad bytes only ever raise CodecError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import codec
from broker.codec import (
    Ack,
    Connack,
    Connect,
    Disconnect,
    PacketType,
    Properties,
    Publish,
    Reason,
    RetainHandling,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Version,
    Will,
)

text = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=20)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
packet_ids = st.integers(1, 0xFFFF)
versions = st.sampled_from(list(Version))


def split(data: bytes) -> tuple[int, bytes]:
    """The first byte and the body of one encoded packet, checking the remaining length."""
    length, shift, pos = 0, 0, 1
    while True:
        byte = data[pos]
        length |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            break
        shift += 7
    assert len(data) - pos == length
    return data[0], data[pos:]


def decode_or_error(first: int, body: bytes, version: Version) -> codec.Packet | codec.CodecError:
    # Any other exception escapes and fails the test.
    try:
        return codec.decode(first, body, version)
    except codec.CodecError as exc:
        return exc


def roundtrip(packet: codec.Packet, version: Version) -> codec.Packet:
    first, body = split(codec.encode(packet, version))
    return codec.decode(first, body, version)


properties = st.builds(
    Properties,
    payload_format_indicator=st.none() | st.integers(0, 1),
    message_expiry_interval=st.none() | u32,
    content_type=st.none() | text,
    response_topic=st.none() | text,
    correlation_data=st.none() | st.binary(max_size=16),
    subscription_identifiers=st.lists(st.integers(1, 268_435_455), max_size=2),
    session_expiry_interval=st.none() | u32,
    receive_maximum=st.none() | st.integers(1, 0xFFFF),
    topic_alias=st.none() | st.integers(1, 0xFFFF),
    reason_string=st.none() | text,
    user_properties=st.lists(st.tuples(text, text), max_size=3),
    maximum_packet_size=st.none() | st.integers(1, 0xFFFF_FFFF),
    server_reference=st.none() | text,
)


def props_for(version: Version) -> st.SearchStrategy[Properties]:
    return properties if version is Version.V5 else st.just(Properties())


@given(st.data(), versions)
def test_publish_roundtrip(data: st.DataObject, version: Version) -> None:
    """PUBLISH with any topic, payload, QoS, flags and (v5) properties decodes to itself."""
    qos = data.draw(st.integers(0, 2))
    packet = Publish(
        data.draw(text),
        data.draw(st.binary(max_size=300)),
        qos,
        data.draw(st.booleans()),
        data.draw(st.booleans()),
        data.draw(packet_ids) if qos else 0,
        data.draw(props_for(version)),
    )
    assert roundtrip(packet, version) == packet


@given(st.data(), versions)
def test_connect_roundtrip(data: st.DataObject, version: Version) -> None:
    """CONNECT with or without will, user name and password decodes to itself."""
    will = data.draw(
        st.none() | st.builds(Will, text, st.binary(max_size=50), st.integers(0, 2), st.booleans(), props_for(version))
    )
    username = data.draw(st.none() | text)
    password = data.draw(st.none() | st.binary(max_size=20)) if username is not None or version is Version.V5 else None
    packet = Connect(
        data.draw(text), version, data.draw(st.booleans()), data.draw(u16), username, password, will,
        data.draw(props_for(version)),
    )  # fmt: skip
    assert roundtrip(packet, version) == packet


ack_kinds = st.sampled_from([PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBREL, PacketType.PUBCOMP])
v5_reasons = st.sampled_from([Reason.SUCCESS, Reason.NO_MATCHING_SUBSCRIBERS, Reason.UNSPECIFIED_ERROR])


@given(st.data(), versions)
def test_acks_roundtrip(data: st.DataObject, version: Version) -> None:
    """PUBACK/PUBREC/PUBREL/PUBCOMP keep their packet id, and in v5 their reason code and properties."""
    v5 = version is Version.V5
    packet = Ack(
        data.draw(ack_kinds),
        data.draw(packet_ids),
        data.draw(v5_reasons) if v5 else Reason.SUCCESS,
        data.draw(props_for(version)),
    )
    assert roundtrip(packet, version) == packet


@given(st.data(), versions)
def test_subscribe_family_roundtrip(data: st.DataObject, version: Version) -> None:
    """SUBSCRIBE (with v5 options), SUBACK, UNSUBSCRIBE and UNSUBACK decode to themselves."""
    v5 = version is Version.V5
    subscription = st.builds(
        Subscription,
        text,
        st.integers(0, 2),
        st.booleans() if v5 else st.just(False),
        st.booleans() if v5 else st.just(False),
        st.sampled_from(list(RetainHandling)) if v5 else st.just(RetainHandling.SEND_ON_SUBSCRIBE),
    )
    pid = data.draw(packet_ids)
    sub = Subscribe(pid, data.draw(st.lists(subscription, min_size=1, max_size=4)), data.draw(props_for(version)))
    assert roundtrip(sub, version) == sub
    granted = st.sampled_from([Reason.SUCCESS, Reason.GRANTED_QOS_1, Reason.GRANTED_QOS_2, Reason.UNSPECIFIED_ERROR])
    suback = Suback(pid, data.draw(st.lists(granted, min_size=1, max_size=4)), data.draw(props_for(version)))
    assert roundtrip(suback, version) == suback
    unsub = Unsubscribe(pid, data.draw(st.lists(text, min_size=1, max_size=4)), data.draw(props_for(version)))
    assert roundtrip(unsub, version) == unsub
    unsuback = Unsuback(pid, data.draw(st.lists(v5_reasons, max_size=3)) if v5 else [], data.draw(props_for(version)))
    assert roundtrip(unsuback, version) == unsuback


@given(st.data(), versions)
def test_connack_and_disconnect_roundtrip(data: st.DataObject, version: Version) -> None:
    """CONNACK and DISCONNECT keep their reason (v5) or the 3.1.1 return code it maps to."""
    v5 = version is Version.V5
    reason = data.draw(st.sampled_from([Reason.SUCCESS, Reason.NOT_AUTHORIZED, Reason.SERVER_UNAVAILABLE]))
    connack = Connack(reason, data.draw(st.booleans()), data.draw(props_for(version)))
    assert roundtrip(connack, version) == connack
    disconnect = Disconnect(reason if v5 else Reason.SUCCESS, data.draw(props_for(version)))
    assert roundtrip(disconnect, version) == disconnect


@given(st.integers(0, 255), st.binary(max_size=200), versions)
def test_arbitrary_bytes_only_raise_codec_errors(first: int, body: bytes, version: Version) -> None:
    """Whatever the bytes, decoding returns a packet or raises CodecError, never anything else."""
    outcome = decode_or_error(first, body, version)
    if isinstance(outcome, codec.CodecError):
        assert outcome.detail
        assert isinstance(outcome.reason, Reason)


@given(st.data(), versions)
def test_mutated_packets_only_raise_codec_errors(data: st.DataObject, version: Version) -> None:
    """A valid packet with bytes flipped, cut or appended decodes or raises CodecError."""
    packet = Publish("a/b", b"xyz", 1, packet_id=7, properties=data.draw(props_for(version)))
    first, body = split(codec.encode(packet, version))
    mutated = bytearray(body)
    for _ in range(data.draw(st.integers(1, 4))):
        if mutated:
            mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    mutated = mutated[: data.draw(st.integers(0, len(mutated)))] + data.draw(st.binary(max_size=4))
    outcome = decode_or_error(first, bytes(mutated), version)
    assert isinstance(outcome, codec.CodecError | Publish)


@pytest.mark.parametrize(
    ("first", "body", "error"),
    [
        (0x30, b"\x00\x03a\x00b", codec.MalformedPacket),  # NUL in a topic
        (0x36, b"\x00\x01a\x00\x01", codec.MalformedPacket),  # QoS 3
        (0x32, b"\x00\x01a\x00\x00", codec.MalformedPacket),  # packet id 0
        (0x82, b"\x00\x01", codec.ProtocolError),  # SUBSCRIBE without filters
        (0x80, b"\x00\x01\x00\x01a\x01", codec.MalformedPacket),  # SUBSCRIBE with wrong flags
        (0x10, b"\x00\x04MQTT\x06\x02\x00\x00\x00\x00", codec.UnsupportedProtocol),  # level 6
        (0x10, b"\x00\x04MQTT\x04\x03\x00\x00\x00\x00", codec.MalformedPacket),  # reserved flag
        (0x00, b"", codec.MalformedPacket),  # type 0
    ],
)
def test_named_defects(first: int, body: bytes, error: type[codec.CodecError]) -> None:
    """Defects the specification names are told apart by error type."""
    with pytest.raises(error):
        codec.decode(first, body, Version.V311)


def test_mqtt31_connect_is_understood() -> None:
    """An MQTT 3.1 CONNECT (protocol name MQIsdp, level 3) decodes as version 3.1."""
    body = b"\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x03abc"
    packet = codec.decode(0x10, body, Version.V311)
    assert packet == Connect("abc", Version.V31, True, 60)
