import asyncio
import json
import time

import pytest

from kernel import InvalidPayload, LimitExceeded, NotFound, StoreError, StoreLocked, StoreRejected, StoreUnavailable
from twin import (
    Channel,
    Inbound,
    IngestSettings,
    Limits,
    MemoryStore,
    MessageKind,
    TwinService,
    VersionConflict,
    running,
)


class RecordingChannel:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Channel, dict]] = []

    def send(self, vehicle_id: str, channel: Channel, payload: bytes, qos: int = 1, subtopic: str = "") -> None:
        self.sent.append((vehicle_id, channel, json.loads(payload)))

    def on(self, channel: Channel) -> list[dict]:
        return [p for _, c, p in self.sent if c is channel]


def telemetry(vid: str, body: object, *, ack: bool = False) -> Inbound:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    fut = asyncio.get_running_loop().create_future() if ack else None
    return Inbound(vid, MessageKind.TELEMETRY, payload, received_at=time.time(), qos=1 if ack else 0, ack=fut)


@pytest.fixture
async def hub():
    store = MemoryStore()
    service = TwinService(store, limits=Limits(max_depth=4, max_keys_per_patch=10))
    channel = RecordingChannel()
    service.channel = channel
    async with running(service):
        yield service, store, channel


async def test_first_telemetry_creates_the_twin_and_history(hub) -> None:
    """A vehicle's first message creates its twin; every message is one history row."""
    service, store, _ = hub
    await service.submit(telemetry("veh-1", {"soc": 50, "gps": {"lat": 1.0, "lon": 2.0}, "ts": 100, "seq": 1}))
    await service.submit(telemetry("veh-1", {"soc": 49, "ts": 101, "seq": 2}))
    item = telemetry("veh-1", {"speed": 3, "ts": 102, "seq": 3}, ack=True)
    await service.submit(item)
    await item.ack
    doc = await service.get_twin("veh-1")
    assert doc.reported == {"soc": 49, "gps": {"lat": 1.0, "lon": 2.0}, "speed": 3}
    assert doc.version == 3
    assert [r.seq for r in store.rows] == [1, 2, 3]
    assert store.twins["veh-1"].version == 3


async def test_ack_resolves_only_after_commit(hub) -> None:
    """The QoS 1 future is resolved after the batch holding its message is in the store."""
    service, store, _ = hub
    item = telemetry("veh-2", {"soc": 10}, ack=True)
    await service.submit(item)
    await item.ack
    assert store.rows
    assert store.rows[-1].vehicle_id == "veh-2"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not_json"),
        (b"[1, 2]", "not_object"),
        (b'"text"', "not_object"),
        (b'{"a": {"b": {"c": {"d": {"e": 1}}}}}', "too_deep"),
        (json.dumps({f"k{i}": i for i in range(20)}).encode(), "too_many_keys"),
        (b'{"ts": "yesterday"}', "bad_timestamp"),
        (b'{"ts": 99999999999, "soc": 1}', "clock_ahead"),
        (b'{"seq": -1}', "bad_seq"),
    ],
)
async def test_bad_telemetry_is_refused_with_a_reason(hub, payload: bytes, reason: str) -> None:
    """Bad input gets an error on the vehicle's errors channel and nothing is applied."""
    service, store, channel = hub
    item = telemetry("veh-bad", payload, ack=True)
    await service.submit(item)
    await item.ack
    errors = channel.on(Channel.ERRORS)
    assert errors
    assert errors[-1]["error"] == reason
    assert errors[-1]["topic"] == "telemetry"
    assert not store.rows
    with pytest.raises(NotFound):
        await service.get_twin("veh-bad")


async def test_other_vehicles_unaffected_by_bad_input(hub) -> None:
    """A refused message in the same batch does not stop the good ones around it."""
    service, store, _ = hub
    await service.submit(telemetry("veh-a", {"soc": 1}))
    await service.submit(telemetry("veh-b", b"garbage"))
    last = telemetry("veh-c", {"soc": 3}, ack=True)
    await service.submit(last)
    await last.ack
    assert {r.vehicle_id for r in store.rows} == {"veh-a", "veh-c"}


async def test_desired_patch_sends_delta_and_shrinks_when_reported(hub) -> None:
    """A desired change is sent as a delta; matching telemetry removes it from the twin's delta."""
    service, _, channel = hub
    first = telemetry("veh-3", {"charge_limit": 90}, ack=True)
    await service.submit(first)
    await first.ack
    doc = await service.patch_desired("veh-3", {"charge_limit": 80, "mode": "eco"})
    assert doc.delta == {"charge_limit": 80, "mode": "eco"}
    assert channel.on(Channel.DELTA)[-1] == {"version": doc.version, "delta": {"charge_limit": 80, "mode": "eco"}}
    done = telemetry("veh-3", {"charge_limit": 80}, ack=True)
    await service.submit(done)
    await done.ack
    doc = await service.get_twin("veh-3")
    assert doc.delta == {"mode": "eco"}
    assert doc.metadata.desired["charge_limit"]["status"] == "applied"


async def test_if_match_conflict(hub) -> None:
    """A desired patch with a stale If-Match version is refused with the current version."""
    service, _, _ = hub
    first = telemetry("veh-4", {"soc": 1}, ack=True)
    await service.submit(first)
    await first.ack
    doc = await service.patch_desired("veh-4", {"a": 1}, if_match=1)
    with pytest.raises(VersionConflict) as info:
        await service.patch_desired("veh-4", {"a": 2}, if_match=1)
    assert info.value.current == doc.version


async def test_desired_patch_for_unknown_vehicle_is_not_found(hub) -> None:
    """Desired state is only accepted for vehicles the hub knows."""
    service, _, _ = hub
    with pytest.raises(NotFound):
        await service.patch_desired("nobody", {"a": 1})


async def test_desired_patch_over_limits_is_refused_whole(hub) -> None:
    """A desired patch breaking a limit changes nothing."""
    service, _, _ = hub
    first = telemetry("veh-5", {"soc": 1}, ack=True)
    await service.submit(first)
    await first.ack
    with pytest.raises(LimitExceeded):
        await service.patch_desired("veh-5", {"a": {"b": {"c": {"d": {"e": 1}}}}})
    assert (await service.get_twin("veh-5")).desired == {}


async def test_presence_and_delta_on_connect(hub) -> None:
    """Connecting marks the twin connected and pushes the pending delta; disconnecting records why."""
    service, _, channel = hub
    first = telemetry("veh-6", {"soc": 1}, ack=True)
    await service.submit(first)
    await first.ack
    await service.patch_desired("veh-6", {"charge_limit": 70})
    channel.sent.clear()
    now = time.time()
    await service.submit(Inbound("veh-6", MessageKind.CONNECTED, b"", received_at=now))
    await service.submit(Inbound("veh-6", MessageKind.SUBSCRIBED, b"", received_at=now, subtopic="twin/delta"))
    marker = telemetry("veh-other", {"x": 1}, ack=True)
    await service.submit(marker)
    await marker.ack
    assert [d["delta"] for d in channel.on(Channel.DELTA)] == [{"charge_limit": 70}, {"charge_limit": 70}]
    assert (await service.get_twin("veh-6")).connection.connected is True
    await service.submit(
        Inbound("veh-6", MessageKind.DISCONNECTED, b"", received_at=now + 1, extra={"reason": "keepalive_timeout"})
    )
    marker = telemetry("veh-other", {"x": 2}, ack=True)
    await service.submit(marker)
    await marker.ack
    conn = (await service.get_twin("veh-6")).connection
    assert conn.connected is False
    assert conn.disconnect_reason == "keepalive_timeout"


async def test_twin_get_answers_with_the_document(hub) -> None:
    """twin/get is answered on the document channel, echoing the request id."""
    service, _, channel = hub
    first = telemetry("veh-7", {"soc": 42}, ack=True)
    await service.submit(first)
    await first.ack
    ask = Inbound("veh-7", MessageKind.TWIN_GET, b'{"request_id": "r1"}', received_at=time.time(), qos=1)
    ask.ack = asyncio.get_running_loop().create_future()
    await service.submit(ask)
    await ask.ack
    doc = channel.on(Channel.DOCUMENT)[-1]
    assert doc["request_id"] == "r1"
    assert doc["reported"] == {"soc": 42}


async def test_rejected_marks_desired_and_leaves_delta(hub) -> None:
    """A vehicle's rejection is recorded with its reason and the key leaves the delta."""
    service, _, _ = hub
    first = telemetry("veh-8", {"soc": 1}, ack=True)
    await service.submit(first)
    await first.ack
    await service.patch_desired("veh-8", {"charge_limit": 120})
    rej = Inbound("veh-8", MessageKind.TWIN_REJECTED, b'{"charge_limit": "max is 100"}', received_at=time.time())
    rej.ack = asyncio.get_running_loop().create_future()
    await service.submit(rej)
    await rej.ack
    doc = await service.get_twin("veh-8")
    assert doc.delta == {}
    assert doc.metadata.desired["charge_limit"] == {
        "ts": doc.metadata.desired["charge_limit"]["ts"],
        "status": "rejected",
        "reason": "max is 100",
    }


async def test_invalid_payload_type_is_exported() -> None:
    """InvalidPayload carries a machine reason and a human detail."""
    exc = InvalidPayload("not_json", "payload is not valid JSON")
    assert exc.reason == "not_json"
    assert "JSON" in exc.detail


async def test_document_size_limit_refuses_whole() -> None:
    """Telemetry or a desired patch that would grow the twin past the limit changes nothing."""
    store = MemoryStore()
    service = TwinService(store, limits=Limits(max_document_bytes=300))
    channel = RecordingChannel()
    service.channel = channel
    async with running(service):
        ok = telemetry("veh-big", {"soc": 1, "note": "x" * 100}, ack=True)
        await service.submit(ok)
        await ok.ack
        big = telemetry("veh-big", {"soc": 2, "more": "y" * 300}, ack=True)
        await service.submit(big)
        await big.ack
        assert channel.on(Channel.ERRORS)[-1]["error"] == "document_too_large"
        doc = await service.get_twin("veh-big")
        assert doc.reported == {"soc": 1, "note": "x" * 100}
        with pytest.raises(LimitExceeded):
            await service.patch_desired("veh-big", {"blob": "z" * 300})
        assert (await service.get_twin("veh-big")).desired == {}
        assert store.twins["veh-big"].desired == {}


async def test_reporting_flag_follows_the_freshness_window() -> None:
    """A connected vehicle that stopped sending telemetry shows reporting: false."""
    now = [1000.0]
    service = TwinService(MemoryStore(), settings=IngestSettings(reporting_window_s=60), clock=lambda: now[0])
    async with running(service):
        await service.submit(Inbound("veh-r", MessageKind.CONNECTED, b"", received_at=now[0]))
        first = Inbound("veh-r", MessageKind.TELEMETRY, b'{"soc": 1}', received_at=now[0], qos=1)
        first.ack = asyncio.get_running_loop().create_future()
        await service.submit(first)
        await first.ack
        assert (await service.get_twin("veh-r")).connection.reporting is True
        now[0] += 61
        conn = (await service.get_twin("veh-r")).connection
        assert conn.connected is True
        assert conn.reporting is False


async def test_ttl_expiry_shows_without_further_messages() -> None:
    """A desired value whose ttl ran out while the vehicle was silent is expired and leaves the delta."""
    now = [1000.0]
    channel = RecordingChannel()
    service = TwinService(MemoryStore(), clock=lambda: now[0])
    service.channel = channel
    async with running(service):
        first = Inbound("veh-x", MessageKind.TELEMETRY, b'{"soc": 1}', received_at=now[0], qos=1)
        first.ack = asyncio.get_running_loop().create_future()
        await service.submit(first)
        await first.ack
        doc = await service.patch_desired("veh-x", {"charge_limit": 70}, ttl_s=30)
        assert doc.delta == {"charge_limit": 70}
        now[0] += 31
        doc = await service.get_twin("veh-x")
        assert doc.delta == {}
        assert doc.metadata.desired["charge_limit"]["status"] == "expired"
        channel.sent.clear()
        await service.submit(Inbound("veh-x", MessageKind.CONNECTED, b"", received_at=now[0]))
        last = Inbound("veh-x", MessageKind.TELEMETRY, b'{"soc": 2}', received_at=now[0], qos=1)
        last.ack = asyncio.get_running_loop().create_future()
        await service.submit(last)
        await last.ack
        assert channel.on(Channel.DELTA) == [], "an expired value is not sent on reconnect"


async def test_observers_see_each_committed_update_with_previous_values(hub) -> None:
    """Observers get every update after commit, per message, with the entries each replaced and the paths patched."""
    service, store, _ = hub
    seen: list = []

    class Recorder:
        def twin_updated(self, updates) -> None:
            assert store.twins[updates[-1].vehicle_id] is not None, "called after commit"
            seen.extend(
                (u.kind.value, u.changed, {k: (e.value if e else None) for k, e in u.previous.items()}) for u in updates
            )

    service.observers.append(Recorder())
    await service.submit(telemetry("veh-o", {"soc": 50, "ts": 10}))
    last = telemetry("veh-o", {"soc": 49, "ts": 11}, ack=True)
    await service.submit(last)
    await last.ack
    await service.patch_desired("veh-o", {"charge_limit": 80, "config": {"report_interval_s": 5}})
    await service.patch_tags("veh-o", {"depot": "north", "model": None})
    assert seen == [
        ("telemetry", (("soc",),), {"soc": None}),
        ("telemetry", (("soc",),), {"soc": 50}),
        ("desired", (("charge_limit",), ("config", "report_interval_s")), {}),
        ("tags", (("depot",), ("model",)), {}),
    ]


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.single_loads = 0
        self.batch_loads: list[list[str]] = []

    async def load_twin(self, vehicle_id: str):
        self.single_loads += 1
        return await super().load_twin(vehicle_id)

    async def load_twins(self, vehicle_ids):
        self.batch_loads.append(list(vehicle_ids))
        return await super().load_twins(vehicle_ids)


async def test_a_batch_loads_the_twins_it_lacks_in_one_call() -> None:
    """Stored twins missing from memory are fetched once per batch, not once per message."""
    store = CountingStore()
    seeded = TwinService(store)
    async with running(seeded):
        for i in range(3):
            item = telemetry(f"veh-{i}", {"soc": 50 + i, "ts": 100}, ack=True)
            await seeded.submit(item)
            await item.ack
    store.batch_loads.clear()
    service = TwinService(store)
    # Queued before the consumer starts, so they form one batch.
    items = [telemetry(f"veh-{i}", {"soc": 10, "ts": 200}, ack=True) for i in (0, 1, 2, 3)]
    connected = Inbound("veh-4", MessageKind.CONNECTED, b"", received_at=time.time())
    for item in [connected, *items]:
        await service.submit(item)
    async with running(service):
        await asyncio.gather(*(item.ack for item in items))
    assert store.batch_loads == [["veh-0", "veh-1", "veh-2", "veh-3", "veh-4"]]
    assert store.single_loads == 0
    assert (await service.get_twin("veh-1")).version == 2
    assert (await service.get_twin("veh-3")).version == 1


# -- the failure model -------------------------------------------------------------------


class FlakyStore(MemoryStore):
    """Fails reads and commits with a given store error a given number of times."""

    def __init__(self, *, read_failures: int = 0, write_failures: int = 0, error: type[Exception]) -> None:
        super().__init__()
        self.read_failures = read_failures
        self.write_failures = write_failures
        self.error = error

    async def load_twins(self, vehicle_ids):
        if self.read_failures:
            self.read_failures -= 1
            raise self.error("database is locked")
        return await super().load_twins(vehicle_ids)

    async def write_batch(self, twins, history, presence=(), statements=()):
        if self.write_failures:
            self.write_failures -= 1
            raise self.error("server closed the connection")
        await super().write_batch(twins, history, presence, statements)


async def test_a_transient_read_error_delays_the_ack_and_the_message_commits() -> None:
    store = FlakyStore(read_failures=3, error=StoreLocked)
    service = TwinService(store)
    async with running(service):
        item = telemetry("veh-1", {"soc": 5}, ack=True)
        await service.submit(item)
        verdict = await asyncio.wait_for(item.ack, 10)
    assert verdict.accepted
    assert store.twins["veh-1"].reported["soc"].value == 5
    assert store.read_failures == 0


async def test_a_failing_handler_leaves_its_message_unacknowledged_and_the_consumer_runs_on() -> None:
    class BrokenCommands:
        def vehicle_connected(self, vehicle_id: str) -> None: ...

        def vehicle_disconnected(self, vehicle_id: str) -> None: ...

        def vehicle_subscribed(self, vehicle_id: str) -> None: ...

        async def result_received(self, item: Inbound) -> None:
            raise RuntimeError("a bug in the command service")

    store = MemoryStore()
    service = TwinService(store)
    service.commands = BrokenCommands()
    async with running(service):
        result = Inbound(
            "veh-1",
            MessageKind.COMMAND_RESULT,
            b"{}",
            received_at=time.time(),
            qos=1,
            ack=asyncio.get_running_loop().create_future(),
            subtopic="c1",
        )
        await service.submit(result)
        after = telemetry("veh-1", {"soc": 7}, ack=True)
        await service.submit(after)
        assert (await asyncio.wait_for(after.ack, 10)).accepted
        assert result.ack is not None
        assert result.ack.done()
        assert isinstance(result.ack.exception(), StoreError)
    assert store.twins["veh-1"].reported["soc"].value == 7


async def test_stop_ends_within_the_deadline_while_commits_fail_and_acknowledges_nothing() -> None:
    store = FlakyStore(write_failures=10**9, error=StoreUnavailable)
    service = TwinService(store, settings=IngestSettings(shutdown_timeout_s=0.5, commit_retry_max_s=5))
    task = asyncio.get_running_loop().create_task(service.run())
    items = [telemetry(f"veh-{n}", {"soc": n}, ack=True) for n in range(5)]
    for item in items:
        await service.submit(item)
    await asyncio.sleep(0.3)
    assert not any(i.ack.done() for i in items)
    started = time.monotonic()
    service.stop()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 2
    assert all(isinstance(i.ack.exception(), StoreError) for i in items)
    assert store.rows == []


class SlowSnapshotStore(MemoryStore):
    """Reads the twins it is given only after a pause, as the PostgreSQL store's COPY does."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[tuple[int, int]] = []  # (twin version written, history rows committed by then)
        self.committed_rows = 0

    async def write_batch(self, twins, history, presence=(), statements=()):
        await asyncio.sleep(0.05)
        self.committed_rows += len(history)
        self.written.extend((t.version, self.committed_rows) for t in twins)
        await super().write_batch(twins, history, presence, statements)


async def test_the_next_batch_is_applied_while_one_commits_and_never_changes_what_it_writes() -> None:
    store = SlowSnapshotStore()
    service = TwinService(store)
    async with running(service):
        items = []
        for n in range(40):
            item = telemetry("veh-1", {"soc": n, "ts": 1000 + n}, ack=True)
            items.append(item)
            await service.submit(item)
            await asyncio.sleep(0.01)
        for item in items:
            assert (await asyncio.wait_for(item.ack, 10)).accepted
    # Several batches, each written as it was applied: a twin's version is the count of its
    # messages committed with it, never one applied later.
    assert store.batches > 2
    assert all(version == rows for version, rows in store.written), store.written
    assert store.twins["veh-1"].version == 40


async def test_a_refused_value_while_the_next_batch_is_applied_is_isolated_and_the_next_batch_commits() -> None:
    class RefusingStore(SlowSnapshotStore):
        async def write_batch(self, twins, history, presence=(), statements=()):
            await asyncio.sleep(0.05)
            if any(row.data.get("poison") for row in history):
                raise StoreRejected("poison is not allowed")
            await super().write_batch(twins, history, presence, statements)

    store = RefusingStore()
    service = TwinService(store)
    async with running(service):
        first = [telemetry(f"veh-{n}", {"soc": n}, ack=True) for n in range(5)]
        poison = telemetry("veh-0", {"poison": True}, ack=True)
        for item in [*first, poison]:
            await service.submit(item)
        await asyncio.sleep(0.02)
        second = [telemetry(f"veh-{n}", {"soc": 10 + n}, ack=True) for n in range(5)]
        for item in second:
            await service.submit(item)
        for item in [*first, *second]:
            assert (await asyncio.wait_for(item.ack, 10)).accepted
        refused = await asyncio.wait_for(poison.ack, 10)
    assert not refused.accepted
    assert refused.reason == "store_rejected"
    assert [d.vehicle_id for d in service.dead_letters.letters] == ["veh-0"]
    assert {vid: t.reported["soc"].value for vid, t in store.twins.items()} == {f"veh-{n}": 10 + n for n in range(5)}
    assert "poison" not in store.twins["veh-0"].reported
