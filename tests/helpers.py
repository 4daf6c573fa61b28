"""Shared test helpers: a real paho-mqtt client with awaitable messages, and polling."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fleethub import Settings, load_settings


class MqttClient:
    """A paho client on its own network thread; messages land in a thread-safe queue."""

    def __init__(
        self, port: int, client_id: str | None = None, *, clean_session: bool = True, username: str | None = None
    ) -> None:
        self.client_id = client_id or f"test-{uuid.uuid4().hex[:8]}"
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=clean_session,
        )
        if username is not None:
            self._client.username_pw_set(username)
        self.port = port
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.acked: set[int] = set()
        self._connected = threading.Event()
        self._client.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, msg.payload))
        self._client.on_publish = lambda _c, _u, mid, _rc, _p: self.acked.add(mid)
        self._client.on_connect = lambda *_: self._connected.set()

    # The broker under test usually runs on the test's own event loop, so every wait here
    # happens in a worker thread: blocking the loop would stall the broker.
    async def connect(self, keepalive: int = 30) -> MqttClient:
        self._client.connect_async("127.0.0.1", self.port, keepalive=keepalive)
        self._client.loop_start()
        if not await asyncio.to_thread(self._connected.wait, 10):
            raise TimeoutError(f"{self.client_id} did not connect")
        return self

    async def subscribe(self, topic: str, qos: int = 1) -> None:
        done = threading.Event()
        self._client.on_subscribe = lambda *_: done.set()
        self._client.subscribe(topic, qos)
        if not await asyncio.to_thread(done.wait, 10):
            raise TimeoutError(f"no SUBACK for {topic}")

    def publish(self, topic: str, payload: Any, qos: int = 1) -> mqtt.MQTTMessageInfo:
        data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        return self._client.publish(topic, data, qos=qos)

    async def publish_and_wait(self, topic: str, payload: Any, qos: int = 1, wait_s: float = 10) -> None:
        info = self.publish(topic, payload, qos)
        await asyncio.to_thread(info.wait_for_publish, wait_s)
        if not info.is_published():
            raise TimeoutError(f"no PUBACK for {topic}")

    async def next_message(self, topic_suffix: str = "", wait_s: float = 10) -> tuple[str, Any]:
        """The next message whose topic ends with `topic_suffix`, JSON-decoded when possible."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                topic, payload = self.messages.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.02)
                continue
            if topic.endswith(topic_suffix):
                try:
                    return topic, json.loads(payload)
                except ValueError:
                    return topic, payload
        raise TimeoutError(f"no message on *{topic_suffix} within {wait_s} s")

    def drop(self) -> None:
        """Vanish without DISCONNECT, as a vehicle losing its link does."""
        sock = self._client.socket()
        self._client.loop_stop()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


async def eventually(check: Callable[[], Awaitable[Any]], *, wait_s: float = 10, interval: float = 0.05) -> Any:
    """Retry an async check until it returns a truthy value or raises no AssertionError."""
    deadline = time.monotonic() + wait_s
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = await check()
            if result:
                return result
        except AssertionError as exc:
            last = exc
        await asyncio.sleep(interval)
    if last is not None:
        raise last
    raise TimeoutError("condition not met in time")


def need_program(name: str) -> str:
    """The path of a program a test drives; skipped where it is not installed, a failure under CI=true."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (.ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def local_settings(store_url: str, overrides: Mapping[str, object] | None = None, *, dev: bool = True) -> Settings:
    """A hub on free local ports over `store_url`; `dev`: development mode, explicitly (anonymous MQTT
    clients, no API tokens), else the hub's own secure defaults. `overrides` win."""
    base: dict[str, object] = {
        "mqtt.host": "127.0.0.1",
        "mqtt.port": 0,
        "http.host": "127.0.0.1",
        "http.port": 0,
        "store.url": store_url,
    }
    if dev:
        base |= {"mqtt.allow_anonymous": True, "auth.enabled": False}
    return load_settings(environ={}, overrides={**base, **(overrides or {})})
