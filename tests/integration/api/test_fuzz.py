"""Property-based fuzzing of the whole HTTP API from its OpenAPI document (schemathesis).

One secure hub runs for the module, on ephemeral ports, in a thread of its own; every
operation of the document gets generated requests, valid and invalid, sent over real
HTTP with an admin's token. For every request: no 5xx, every error is an RFC 9457
problem document, and the hub stays healthy. Throughout, a canary vehicle publishes
QoS 1 telemetry and every publish must be acknowledged.

Examples per operation are bounded (FLEETHUB_FUZZ_EXAMPLES, default 12) so the module
costs well under a minute; raise it locally for a deeper run.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import paho.mqtt.client as mqtt
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry
from schemathesis import Case, GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api import ApiDeps, create_app
from fleethub.hub import Hub
from security import CLI, Role
from tests.integration.security.conftest import secure_settings

CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = int(os.environ.get("FLEETHUB_FUZZ_EXAMPLES", "12"))
FUZZ_CAR = "fuzz-car"
CANARY = "fuzz-canary"
_VEHICLE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _document() -> dict:
    """The OpenAPI document exactly as the hub serves it (built without starting one)."""
    app = create_app(ApiDeps(service=None, history=None, registry=CollectorRegistry(), health=None))
    return app.openapi_schema.to_schema()


schema = schemathesis.openapi.from_dict(_document())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=EXAMPLES,
    deterministic=True,
)


class Canary:
    """A vehicle publishing QoS 1 telemetry every 50 ms on its own paho thread, tracking PUBACKs."""

    def __init__(self, port: int, secret: str) -> None:
        self.port = port
        self.secret = secret
        self.published = 0
        self.acked = 0
        self.stop = threading.Event()
        self._lock = threading.Lock()
        # Message id -> when it was sent, until its PUBACK arrives; PUBACKs that beat the bookkeeping.
        self._waiting: dict[int, float] = {}
        self._early: set[int] = set()

    def __repr__(self) -> str:
        # Hypothesis prints test arguments on failure; the live dict must not be walked from another thread.
        return f"Canary(published={self.published}, acked={self.acked})"

    def _on_publish(self, _client: object, _userdata: object, mid: int, _rc: object, _props: object) -> None:
        with self._lock:
            if self._waiting.pop(mid, None) is not None:
                self.acked += 1
            else:
                self._early.add(mid)

    def run(self) -> None:
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=CANARY)
        client.username_pw_set(CANARY, self.secret)
        client.on_publish = self._on_publish
        client.connect("127.0.0.1", self.port, keepalive=30)
        client.loop_start()
        try:
            while not self.stop.wait(0.05):
                # Not under the lock: paho calls on_publish holding its own lock, which publish() takes too.
                sent = time.monotonic()
                info = client.publish(f"vehicles/{CANARY}/telemetry", f'{{"soc": {self.published % 100}}}', qos=1)
                with self._lock:
                    self.published += 1
                    if info.mid in self._early:
                        self._early.discard(info.mid)
                        self.acked += 1
                    else:
                        self._waiting[info.mid] = sent
        finally:
            client.disconnect()
            client.loop_stop()

    def oldest_unacked_s(self) -> float:
        now = time.monotonic()
        with self._lock:
            return max((now - at for at in self._waiting.values()), default=0.0)


@dataclass
class FuzzHub:
    base_url: str
    headers: dict[str, str]
    canary: Canary
    sent: int = 0


@pytest.fixture(scope="module")
def fuzz_hub(tmp_path_factory) -> Iterator[FuzzHub]:
    """A secure hub on its own event loop in a thread, an admin token, a fuzz target vehicle and a canary."""
    db = tmp_path_factory.mktemp("fuzz") / "hub.db"
    # Commands' `wait` is bounded small so generated waits cannot stall the run.
    overrides = {"commands.max_wait_s": 0.5, "abuse.message_rate_per_s": 0}
    ready: dict[str, object] = {}
    started = threading.Event()
    stopping: asyncio.Event | None = None
    loop_box: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        nonlocal stopping
        stopping = asyncio.Event()
        loop_box.append(asyncio.get_running_loop())
        try:
            async with Hub(secure_settings(str(db), **overrides)) as hub:
                await hub.security.add_user("fuzz-admin", Role.ADMIN, ("*",), actor=CLI)
                ready["token"] = (await hub.security.issue_token("fuzz-admin", actor=CLI)).secret
                await hub.security.provision(FUZZ_CAR, "acme", actor=CLI)
                ready["canary_secret"] = (await hub.security.provision(CANARY, "canary-fleet", actor=CLI)).secret
                ready["http"] = hub.http_port
                ready["mqtt"] = hub.mqtt_port
                started.set()
                await stopping.wait()
        except BaseException as exc:
            ready["error"] = exc
            started.set()
            raise

    thread = threading.Thread(target=lambda: asyncio.run(serve()), name="fuzz-hub", daemon=True)
    thread.start()
    assert started.wait(30), "the hub did not start"
    if "error" in ready:
        raise RuntimeError("the hub failed to start") from ready["error"]
    canary = Canary(int(ready["mqtt"]), str(ready["canary_secret"]))
    canary_thread = threading.Thread(target=canary.run, name="fuzz-canary", daemon=True)
    canary_thread.start()
    try:
        yield FuzzHub(f"http://127.0.0.1:{ready['http']}", {"Authorization": f"Bearer {ready['token']}"}, canary)
    finally:
        canary.stop.set()
        canary_thread.join(10)
        assert stopping is not None
        loop_box[0].call_soon_threadsafe(stopping.set)
        thread.join(30)
        assert not thread.is_alive(), "the hub did not stop"


def _content_type(response) -> str:
    # schemathesis responses hold each header as a list of its values.
    values = response.headers.get("content-type") or [""]
    return values[0]


def _is_problem(response) -> bool:
    if not _content_type(response).startswith("application/problem+json"):
        return False
    body = response.json()
    return {"type", "title", "status", "detail"} <= body.keys() and body["status"] == response.status_code


# One test per operation, parametrized by pytest itself: schemathesis's own `schema.parametrize()`
# collapses into a single item that runs nothing under pytest-xdist (`make test` runs in workers).
OPERATIONS = {op.label: op for op in (result.ok() for result in schema.get_all_operations())}


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_request_breaks_the_api_or_the_hub(label: str, fuzz_hub: FuzzHub) -> None:
    """Whatever is sent: never a 5xx, every error a problem document, the hub healthy, the canary acknowledged."""
    operation = OPERATIONS[label]
    # Valid and invalid requests together: an operation with nothing to make invalid has only the former.
    cases = st.one_of(operation.as_strategy(mode) for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE))

    # Explicit, so the CI hypothesis profile (150 examples) does not multiply the cost by twelve;
    # twice EXAMPLES, as each of the two modes had that many.
    @settings(max_examples=2 * EXAMPLES, suppress_health_check=list(HealthCheck), deadline=None, derandomize=True)
    @given(case=cases)
    def fuzz(case: Case) -> None:
        _send(case, fuzz_hub)

    fuzz()


def _send(case: Case, fuzz_hub: FuzzHub) -> None:
    vehicle_id = (case.path_parameters or {}).get("vehicle_id")
    # Half of the well-formed vehicle ids aim at a real vehicle, so the handlers behind the fleet guard run too.
    if isinstance(vehicle_id, str) and _VEHICLE_ID.match(vehicle_id) and hash(vehicle_id) % 2 == 0:
        case.path_parameters["vehicle_id"] = FUZZ_CAR
    response = case.call(base_url=fuzz_hub.base_url, headers=fuzz_hub.headers, timeout=10)
    where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    assert response.status_code < 500, where
    if response.status_code >= 400:
        assert _is_problem(response), where
    # And the response is what the document says: a documented status, content type and body schema.
    case.validate_response(response, checks=CONFORMANCE)
    fuzz_hub.sent += 1
    # The hub stays up: health every few requests (each costs a store round trip), the canary every time.
    if fuzz_hub.sent % 16 == 0:
        assert httpx.get(f"{fuzz_hub.base_url}/healthz", timeout=10).status_code == 200, where
    assert fuzz_hub.canary.oldest_unacked_s() < 10, "the canary's QoS 1 publish waits for its PUBACK"


def test_the_canary_was_acknowledged_throughout(fuzz_hub: FuzzHub) -> None:
    """After the fuzzing, the canary has published throughout and every publish but the last few is acknowledged."""
    canary = fuzz_hub.canary
    deadline = time.monotonic() + 10
    while canary.oldest_unacked_s() > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert canary.published > 20
    assert canary.oldest_unacked_s() == 0
    assert canary.acked == canary.published
    assert fuzz_hub.sent > 1000
    assert httpx.get(f"{fuzz_hub.base_url}/healthz", timeout=10).status_code == 200
