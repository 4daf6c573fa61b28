"""Helpers: a real Mosquitto broker on a free port, and a paho client that records what it hears."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mosquitto:
    """A Mosquitto process that a test can stop and start again on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.log = workdir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self._process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            if self._process.poll() is not None:
                pytest.fail(f"mosquitto exited at start-up:\n{self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"mosquitto did not listen on {self.port}:\n{self.log.read_text()}")
                time.sleep(0.02)
            else:
                return

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


class Recorder:
    """A paho client on its own thread, keeping every message it receives, decoded."""

    def __init__(self, port: int, *filters: str) -> None:
        self.messages: list[tuple[str, int, Any]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"recorder-{port}")
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_connect = lambda client, *_: client.subscribe([(f, 1) for f in filters])
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        if not self._subscribed.wait(5):
            self.close()
            pytest.fail("the recording client could not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, message.qos, msgspec.json.decode(message.payload)))

    def on(self, topic: str) -> list[Any]:
        with self._lock:
            return [payload for t, _, payload in self.messages if t == topic]

    def publish(self, topic: str, payload: Any) -> None:
        self._client.publish(topic, msgspec.json.encode(payload), qos=1).wait_for_publish(5)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@contextlib.contextmanager
def recording(port: int, *filters: str) -> Iterator[Recorder]:
    recorder = Recorder(port, *filters)
    try:
        yield recorder
    finally:
        recorder.close()


async def eventually(predicate: Callable[[], object], within: float = 10.0, what: str = "condition") -> None:
    """Wait until `predicate()` is truthy, failing the test after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{what} not met within {within} s")
        await asyncio.sleep(0.02)
