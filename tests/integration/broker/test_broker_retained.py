"""Retained messages and `$` topics, as MQTT 3.1.1 has them."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from broker_harness import Client, eventually

from broker import EmbeddedBroker

ClientMaker = Callable[..., Client]


@pytest.fixture
def base() -> str:
    """A topic prefix no other test uses."""
    return f"depot/{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def clients() -> AsyncIterator[ClientMaker]:
    made: list[Client] = []

    def make(client_id: str | None = None, **kwargs: bool) -> Client:
        client = Client(client_id or f"client-{uuid.uuid4().hex[:8]}", **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        with contextlib.suppress(OSError):
            client.paho.disconnect()
        await asyncio.to_thread(client.paho.loop_stop)


async def _retain(publisher: Client, topic: str, payload: bytes, qos: int) -> None:
    info = publisher.paho.publish(topic, payload, qos=qos, retain=True)
    if qos:
        await eventually(lambda: publisher.is_acked(info.mid))


@pytest.mark.parametrize(("sub_qos", "expected"), [(0, {"q0": 0, "q1": 0}), (1, {"q0": 0, "q1": 1})])
async def test_retained_is_delivered_on_subscribe_at_the_lower_qos(
    hub: EmbeddedBroker, clients: ClientMaker, base: str, sub_qos: int, expected: dict[str, int]
) -> None:
    """A new subscription gets each retained message with RETAIN set, at min(published QoS, subscription QoS)."""
    publisher = await clients().start(hub.port)
    await _retain(publisher, f"{base}/q0", b"published at 0", qos=0)
    await _retain(publisher, f"{base}/q1", b"published at 1", qos=1)
    await asyncio.sleep(0.1)

    subscriber = await clients().start(hub.port)
    await subscriber.subscribe(f"{base}/+", qos=sub_qos)
    await eventually(lambda: len(subscriber.messages()) == 2)
    got = {m.topic.rsplit("/", 1)[1]: (m.qos, m.retain) for m in subscriber.messages()}
    assert got == {name: (qos, True) for name, qos in expected.items()}


async def test_live_messages_reach_existing_subscribers_without_retain(
    hub: EmbeddedBroker, clients: ClientMaker, base: str
) -> None:
    """An established subscription gets a retained PUBLISH with RETAIN cleared (MQTT-3.3.1-9)."""
    subscriber = await clients().start(hub.port)
    await subscriber.subscribe(f"{base}/#", qos=1)
    publisher = await clients().start(hub.port)
    await _retain(publisher, f"{base}/status", b"open", qos=1)
    await eventually(lambda: len(subscriber.messages()) == 1)
    [message] = subscriber.messages()
    assert (message.payload, message.retain) == (b"open", False)


async def test_empty_retained_payload_deletes_the_retained_message(
    hub: EmbeddedBroker, clients: ClientMaker, base: str
) -> None:
    """A retained PUBLISH with an empty payload removes what was retained on its topic."""
    publisher = await clients().start(hub.port)
    await _retain(publisher, f"{base}/gone", b"soon deleted", qos=1)
    await _retain(publisher, f"{base}/gone", b"", qos=1)
    await _retain(publisher, f"{base}/kept", b"still here", qos=1)
    await asyncio.sleep(0.1)

    subscriber = await clients().start(hub.port)
    await subscriber.subscribe(f"{base}/#", qos=1)
    await eventually(lambda: subscriber.on(f"{base}/kept") == [b"still here"])
    await asyncio.sleep(0.2)
    assert subscriber.on(f"{base}/gone") == []


async def test_reconnecting_gets_no_retained_messages_it_did_not_subscribe_to(
    hub: EmbeddedBroker, clients: ClientMaker, base: str
) -> None:
    """amqtt sent a connecting client the retained messages of everyone's filters; only a SUBSCRIBE brings them."""
    watcher = await clients().start(hub.port)
    await watcher.subscribe(f"{base}/#", qos=1)
    publisher = await clients().start(hub.port)
    await _retain(publisher, f"{base}/private", b"not for everyone", qos=1)

    cid = f"tracker-{uuid.uuid4().hex[:8]}"
    for clean in (True, False, False):
        bystander = await clients(cid, clean_session=clean).start(hub.port)
        await asyncio.sleep(0.3)
        assert bystander.messages() == []
        await bystander.stop()


async def test_dollar_topics_are_not_matched_by_leading_wildcards(
    hub: EmbeddedBroker, clients: ClientMaker, base: str
) -> None:
    """`#` and `+/...` match neither retained nor live `$` messages; a `$SYS/...` filter matches both."""
    await hub.publish(f"$SYS/{base}/retained", b"r", qos=1, retain=True)
    everything = await clients().start(hub.port)
    await everything.subscribe("#", qos=1)
    plus = await clients().start(hub.port)
    await plus.subscribe(f"+/{base}/retained", qos=1)
    plus_live = await clients().start(hub.port)
    await plus_live.subscribe(f"+/{base}/live", qos=1)
    system = await clients().start(hub.port)
    await system.subscribe(f"$SYS/{base}/#", qos=1)
    await eventually(lambda: system.on(f"$SYS/{base}/retained") == [b"r"])

    await hub.publish(f"$SYS/{base}/live", b"l", qos=1)
    await hub.publish(f"{base}/marker", b"m", qos=1)
    await eventually(lambda: system.on(f"$SYS/{base}/live") == [b"l"])
    await eventually(lambda: everything.on(f"{base}/marker") == [b"m"])
    assert [m.topic for m in everything.messages() if m.topic.startswith("$")] == []
    assert plus.messages() == []
    assert plus_live.messages() == []
