"""Starting and stopping the embedded broker: ports, clean exit, nothing left behind."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from broker_harness import Client, RawClient, RecordingSink, eventually

from broker import EmbeddedBroker, PortInUse
from kernel import ConfigError
from twin.inbound import Channel, MessageKind


async def test_port_zero_binds_a_free_port(sink: RecordingSink) -> None:
    """With port 0 the broker reports the port it really bound, and serves on it."""
    async with EmbeddedBroker(sink, host="127.0.0.1", port=0) as hub:
        assert hub.port > 0
        assert hub.running
        raw = await RawClient.connect(hub.port, "probe/1")
        assert await raw.ping()
        await raw.close()
    assert not hub.running


async def test_busy_port_raises_port_in_use(sink: RecordingSink, caplog: pytest.LogCaptureFixture) -> None:
    """A port held by another process gives PortInUse naming the port, not an amqtt traceback."""
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        with pytest.raises(PortInUse, match=f"MQTT port {port} is already in use on 127.0.0.1") as caught:
            async with EmbeddedBroker(sink, host="127.0.0.1", port=port):
                pytest.fail("started on a busy port")
    assert isinstance(caught.value, ConfigError)
    assert caught.value.port == port
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_busy_websocket_port_closes_the_tcp_listener(sink: RecordingSink) -> None:
    """When the WebSocket port is taken, the already-bound TCP listener is released too."""
    with socket.create_server(("127.0.0.1", 0)) as holder:
        ws_port = holder.getsockname()[1]
        with pytest.raises(PortInUse, match="WebSocket") as caught:
            async with EmbeddedBroker(sink, host="127.0.0.1", port=0, ws_port=ws_port):
                pytest.fail("started on a busy port")
    assert caught.value.listener == "ws"
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"port": 70000}, "MQTT port must be 0-65535"), ({"max_payload_bytes": 0}, "payload limit")],
)
async def test_bad_settings_are_config_errors(sink: RecordingSink, kwargs: dict[str, int], message: str) -> None:
    """Out-of-range settings fail at construction with a message naming them."""
    with pytest.raises(ConfigError, match=message):
        EmbeddedBroker(sink, **kwargs)


async def test_exit_stops_everything_and_reports_shutdown(sink: RecordingSink) -> None:
    """Leaving the context disconnects vehicles (reason shutdown), cancels unacked QoS 1, leaves no task."""
    vid = "veh-shutdown-1"
    client = Client(vid)
    try:
        async with EmbeddedBroker(sink, host="127.0.0.1", port=0, ws_port=0) as hub:
            assert hub.ws_port is not None
            assert hub.ws_port > 0
            client.paho.connect_async("127.0.0.1", hub.port, keepalive=30)
            client.paho.loop_start()
            await eventually(client.connected.is_set)
            client.publish(f"vehicles/{vid}/telemetry", b'{"soc": 10}', qos=1)
            [pending] = await sink.wait_for(vid, MessageKind.TELEMETRY)
            assert hub.connected_clients() == 1
    finally:
        client.paho.disconnect()
        await asyncio.to_thread(client.paho.loop_stop)

    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert pending.ack is not None
    assert pending.ack.cancelled(), "an unacknowledged QoS 1 future outlived the broker"
    [gone] = sink.of(vid, MessageKind.DISCONNECTED)
    assert gone.extra == {"reason": "shutdown"}
    assert [i.kind for i in sink.of(vid)][-1] is MessageKind.DISCONNECTED


async def test_anonymous_clients_are_refused_when_not_allowed(sink: RecordingSink) -> None:
    """With allow_anonymous off (and no credentials yet) the CONNACK says not authorised."""
    async with EmbeddedBroker(sink, host="127.0.0.1", port=0, allow_anonymous=False) as hub:
        raw = await RawClient.connect(hub.port, "veh-anon-1", expect=5)
        assert await raw.closed_by_broker()
        await raw.close()
        assert hub.connected_clients() == 0
    assert sink.items == []


async def test_channel_is_quiet_before_start_and_after_stop(sink: RecordingSink) -> None:
    """Using the broker outside `async with` is a clear error, not a silent hang."""
    hub = EmbeddedBroker(sink, host="127.0.0.1", port=0)
    with pytest.raises(RuntimeError, match="not running"):
        _ = hub.channel
    async with hub:
        channel = hub.channel
    # A send racing with shutdown is dropped rather than queued forever.
    channel.send("veh-1", Channel.DELTA, b"{}")
    with pytest.raises(RuntimeError, match="not running"):
        hub.connected_clients()
