"""A slow store slows the publishers down (delayed PUBACK) and the hub's memory stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Self

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from broker import BACKLOG_LIMIT
from fleethub.hub import Hub
from kernel import DatabaseInfo
from tests.helpers import local_settings
from twin import (
    AggregatePage,
    AggregateQuery,
    HistoryPage,
    HistoryQuery,
    HistoryRow,
    MaintenanceReport,
    PointQuery,
    PresenceEvent,
    PresenceQuery,
    Statement,
    Store,
    TwinFilter,
    TwinState,
)

QUEUE_MAX = 20
BATCH_MAX = 10
COMMIT_DELAY_S = 0.05
PUBLISHERS = 2
MESSAGES_EACH = 1000
PAYLOAD_BYTES = 8000


class SlowStore:
    """A real SQLite store whose every commit takes `delay` longer, counting committed history rows."""

    def __init__(self, inner: Store, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.committed_rows = 0

    async def __aenter__(self) -> Self:
        await self.inner.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.inner.__aexit__(exc_type, exc, tb)

    async def write_batch(
        self,
        twins: Sequence[TwinState],
        history: Sequence[HistoryRow],
        presence: Sequence[PresenceEvent] = (),
        statements: Sequence[Statement] = (),
    ) -> None:
        await asyncio.sleep(self.delay)
        await self.inner.write_batch(twins, history, presence, statements)
        self.committed_rows += len(history)

    async def load_twin(self, vehicle_id: str) -> TwinState | None:
        return await self.inner.load_twin(vehicle_id)

    async def load_twins(self, vehicle_ids: Sequence[str]) -> dict[str, TwinState]:
        return await self.inner.load_twins(vehicle_ids)

    async def list_twins(self, query: TwinFilter) -> list[TwinState]:
        return await self.inner.list_twins(query)

    async def count_twins(self, fleet: str | None = None) -> int:
        return await self.inner.count_twins(fleet)

    async def history(self, query: HistoryQuery) -> list[HistoryRow]:
        return await self.inner.history(query)

    async def presence_history(self, query: PresenceQuery) -> list[PresenceEvent]:
        return await self.inner.presence_history(query)

    async def history_page(self, query: PointQuery) -> HistoryPage:
        return await self.inner.history_page(query)

    async def aggregate(self, query: AggregateQuery) -> AggregatePage:
        return await self.inner.aggregate(query)

    async def history_until(
        self, vehicle_id: str, at: float, *, cursor: str | None = None, limit: int = 1000
    ) -> HistoryPage:
        return await self.inner.history_until(vehicle_id, at, cursor=cursor, limit=limit)

    async def maintain(self, now: float) -> MaintenanceReport:
        return await self.inner.maintain(now)

    async def info(self) -> DatabaseInfo:
        return await self.inner.info()

    async def ping(self) -> None:
        await self.inner.ping()


class Publisher:
    """A paho client that sends everything at once (a large in-flight window) and counts PUBACKs."""

    def __init__(self, port: int, vehicle_id: str) -> None:
        self.vehicle_id = vehicle_id
        self.acked = 0
        self._lock = threading.Lock()
        self.paho = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=vehicle_id)
        self.paho.max_inflight_messages_set(MESSAGES_EACH)
        self.paho.on_publish = self._on_publish
        self.paho.connect("127.0.0.1", port)
        self.paho.loop_start()

    def _on_publish(self, *_: object) -> None:
        with self._lock:
            self.acked += 1

    def acks(self) -> int:
        with self._lock:
            return self.acked


@pytest.fixture
async def slow_hub(tmp_path) -> AsyncIterator[tuple[Hub, SlowStore]]:
    settings = local_settings(
        f"sqlite:///{tmp_path}/slow.db",
        {
            "ingest.queue_max": QUEUE_MAX,
            "ingest.batch_max": BATCH_MAX,
        },
    )
    slow: list[SlowStore] = []

    def wrap(store: Store) -> SlowStore:
        slow.append(SlowStore(store, COMMIT_DELAY_S))
        return slow[0]

    async with Hub(settings, wrap_store=wrap) as hub:
        yield hub, slow[0]


# The paho clients share this process: their queued packets are allocated in paho, and the
# Condition behind each MQTTMessageInfo in threading (the hub makes no thread objects per message).
_NOT_THE_HUB = [tracemalloc.Filter(False, "*/paho/*"), tracemalloc.Filter(False, "*/threading.py")]


def _hub_memory(baseline: tracemalloc.Snapshot) -> int:
    """Bytes allocated since `baseline` by the hub, leaving out the publishers in this same process."""
    snapshot = tracemalloc.take_snapshot().filter_traces(_NOT_THE_HUB)
    return sum(stat.size_diff for stat in snapshot.compare_to(baseline, "filename"))


async def test_slow_store_delays_pubacks_and_keeps_the_queue_and_memory_bounded(slow_hub) -> None:
    """Flooding a slow store: acks never outrun commits, the queue and the hub's messages and memory stay bounded."""
    hub, store = slow_hub
    prefix = f"veh-bp-{uuid.uuid4().hex[:6]}"
    payloads = [
        # Strings are limited to 4096 characters each, so the bulk is split over a few keys.
        json.dumps(
            {"seq": n, "ts": time.time() - 60 + n / 1000, **{f"blob{k}": "x" * (PAYLOAD_BYTES // 4) for k in range(4)}}
        ).encode()
        for n in range(MESSAGES_EACH)
    ]
    publishers = [Publisher(hub.mqtt_port, f"{prefix}-{i}") for i in range(PUBLISHERS)]
    tracemalloc.start()
    try:
        await asyncio.sleep(0.2)
        baseline = tracemalloc.take_snapshot().filter_traces(_NOT_THE_HUB)
        for publisher in publishers:
            for payload in payloads:
                publisher.paho.publish(f"vehicles/{publisher.vehicle_id}/telemetry", payload, qos=1)

        depths: list[int] = []
        in_hub: list[float] = []
        memory: list[int] = []
        for tick in range(150):
            acked = sum(p.acks() for p in publishers)
            # Read after the acks: an ack is only ever sent for a row already committed.
            assert acked <= store.committed_rows, "a PUBACK went out before its row was committed"
            depths.append(hub.service.health().queue_depth)
            received = hub.registry.get_sample_value("fleethub_mqtt_messages_received_total") or 0
            in_hub.append(received - store.committed_rows)
            if tick % 25 == 0:
                memory.append(_hub_memory(baseline))
            await asyncio.sleep(0.02)
        memory.append(_hub_memory(baseline))
        acked = sum(p.acks() for p in publishers)
        committed = store.committed_rows
    finally:
        tracemalloc.stop()
        for publisher in publishers:
            with contextlib.suppress(OSError):
                publisher.paho.disconnect()
            await asyncio.to_thread(publisher.paho.loop_stop)

    total = PUBLISHERS * MESSAGES_EACH
    unsent_bytes = (total - committed) * PAYLOAD_BYTES
    print(
        f"\ncommitted {committed}/{total}, acked {acked}, max queue depth {max(depths)} (queue_max {QUEUE_MAX}), "
        f"max messages inside the hub {max(in_hub):.0f}, max hub memory growth {max(memory) / 1e6:.2f} MB "
        f"while {unsent_bytes / 1e6:.1f} MB waited at the publishers"
    )
    assert max(depths) <= QUEUE_MAX
    assert max(depths) >= QUEUE_MAX // 2, "the flood never filled the pipeline; the test proves nothing"
    assert acked < total, "the publishers were not held back"
    # Received but not committed: the ingest queue, the batch being committed and the next one being
    # applied meanwhile, one message per connection waiting to enter the queue. (Messages read but not
    # yet routed sit in each connection's backlog.)
    assert max(in_hub) <= QUEUE_MAX + 2 * BATCH_MAX + PUBLISHERS
    held_at_most = (QUEUE_MAX + BATCH_MAX + PUBLISHERS * (BACKLOG_LIMIT + 2)) * PAYLOAD_BYTES
    assert unsent_bytes > 4 * held_at_most, "the flood was too small to tell bounded from unbounded"
    assert max(memory) < unsent_bytes / 4
