"""A paho client for the security tests: credentials, TLS, WebSocket, and what the broker answered."""

from __future__ import annotations

import asyncio
import json
import queue
import ssl
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REFUSED = 0x80


class Client:
    def __init__(
        self,
        port: int,
        client_id: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        websocket: bool = False,
        clean_session: bool = True,
    ) -> None:
        self.client_id = client_id or f"test-{uuid.uuid4().hex[:8]}"
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            transport="websockets" if websocket else "tcp",
            clean_session=clean_session,
            reconnect_on_failure=False,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        if tls is not None:
            self._client.tls_set_context(tls)
        self.port = port
        self.rc: int | None = None
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._connack = threading.Event()
        self.disconnected = threading.Event()
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *_: self.disconnected.set()
        self._client.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, msg.payload))

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.rc = int(reason.value) if hasattr(reason, "value") else int(reason)
        self._connack.set()

    async def connect(self, wait_s: float = 10) -> int:
        """Connect and return the CONNACK code (0 accepted); -1 when the broker closed without one."""
        self._client.connect_async("127.0.0.1", self.port, keepalive=30)
        self._client.loop_start()
        got = await asyncio.to_thread(lambda: self._connack.wait(wait_s) or self.disconnected.wait(0.1))
        if not got:
            raise TimeoutError(f"{self.client_id}: no CONNACK")
        return self.rc if self.rc is not None else -1

    async def subscribe(self, topic_filter: str, qos: int = 1) -> int:
        """Subscribe and return the SUBACK code for the filter (0-2 granted QoS, 0x80 refused)."""
        done = threading.Event()
        codes: list[int] = []

        def on_subscribe(_c: Any, _u: Any, _mid: Any, reasons: Any, _props: Any) -> None:
            codes.extend(int(r.value) if hasattr(r, "value") else int(r) for r in reasons)
            done.set()

        self._client.on_subscribe = on_subscribe
        self._client.subscribe(topic_filter, qos)
        if not await asyncio.to_thread(done.wait, 10):
            raise TimeoutError(f"no SUBACK for {topic_filter}")
        return codes[0]

    async def publish(self, topic: str, payload: Any, qos: int = 1, wait_s: float = 10) -> None:
        data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        info = self._client.publish(topic, data, qos=qos)
        if qos:
            await asyncio.to_thread(info.wait_for_publish, wait_s)

    async def next_message(self, wait_s: float = 10) -> tuple[str, bytes]:
        return await asyncio.to_thread(self.messages.get, True, wait_s)

    async def wait_disconnected(self, wait_s: float = 10) -> bool:
        return await asyncio.to_thread(self.disconnected.wait, wait_s)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
