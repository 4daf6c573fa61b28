"""The command service on a fake clock, the in-memory store and a recording channel: no broker, no sleeps."""

import asyncio

import msgspec
import pytest

from commands import (
    CommandClosed,
    CommandQuery,
    CommandService,
    CommandsSettings,
    CommandState,
    JobSelector,
    JobState,
    MemoryCommandStore,
)
from kernel import InvalidPayload, NotFound
from twin import Channel, Inbound, MessageKind, TwinFilter, TwinState


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Twins:
    def __init__(self, *vids: str) -> None:
        self.twins = {v: TwinState(vehicle_id=v, created_at=1.0, updated_at=1.0) for v in vids}

    async def state(self, vehicle_id: str) -> TwinState | None:
        return self.twins.get(vehicle_id)

    async def states(self, query: TwinFilter) -> list[TwinState]:
        ids = sorted(v for v in self.twins if query.after is None or v > query.after)
        return [self.twins[v] for v in ids[: query.limit]]


class RecordingChannel:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Channel, dict, str]] = []

    def send(self, vehicle_id: str, channel: Channel, payload: bytes, qos: int = 1, subtopic: str = "") -> None:
        self.sent.append((vehicle_id, channel, msgspec.json.decode(payload), subtopic))

    def commands(self) -> list[tuple[str, int]]:
        return [(s[3], s[2]["attempt"]) for s in self.sent if s[1] is Channel.COMMAND]


@pytest.fixture
async def setup():
    clock, store, channel = Clock(), MemoryCommandStore(), RecordingChannel()
    service = CommandService(
        store, Twins("v1", "v2", "v3"), settings=CommandsSettings(resend_interval_s=10.0), clock=clock
    )
    service.channel = channel
    await service.load()
    return service, clock, store, channel


def result(vid: str, command_id: str, payload: object) -> Inbound:
    data = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
    ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    return Inbound(vid, MessageKind.COMMAND_RESULT, data, received_at=0.0, qos=1, ack=ack, subtopic=command_id)


async def test_queued_until_online_then_resent_on_interval_until_the_ttl(setup):
    """Offline: nothing goes out. Online: sent at once, again every resend interval, expired at the TTL."""
    service, clock, store, channel = setup
    command, created = await service.create("v1", "lock", ttl_s=25.0)
    assert created
    assert command.state is CommandState.QUEUED
    await service.run_once()
    assert channel.commands() == []
    service.vehicle_connected("v1")
    await service.run_once()
    assert channel.commands() == [(command.id, 1)]
    clock.now += 9.0
    await service.run_once()
    assert channel.commands() == [(command.id, 1)]
    clock.now += 1.0
    await service.run_once()
    assert channel.commands() == [(command.id, 1), (command.id, 2)]
    service.vehicle_subscribed("v1")
    await service.run_once()
    assert channel.commands()[-1] == (command.id, 3)
    clock.now += 15.0
    await service.run_once()
    stored = await store.get(command.id)
    assert stored is not None
    assert stored.state is CommandState.EXPIRED
    assert [t.state for t in stored.history] == [CommandState.QUEUED, CommandState.SENT, CommandState.EXPIRED]


async def test_results_are_acked_after_storing_and_duplicates_change_nothing(setup):
    """A result completes the command and acks; its resend is acked again; bad ones get a reason on errors."""
    service, _, store, channel = setup
    service.vehicle_connected("v1")
    command, _ = await service.create("v1", "unlock")
    first = result("v1", command.id, {"status": "succeeded", "detail": "ok", "result": {"doors": "open"}})
    again = result("v1", command.id, {"status": "failed"})
    bad = result("v1", command.id, b"{")
    other = result("v2", command.id, {"status": "succeeded"})
    for item in (first, again, bad, other):
        await service.result_received(item)
    waiting = asyncio.ensure_future(service.wait(command.id, 5.0))
    await service.run_once()
    assert all(item.ack is not None and item.ack.done() for item in (first, again, bad, other))
    done = await waiting
    assert (done.state, done.detail, done.result) == (CommandState.SUCCEEDED, "ok", {"doors": "open"})
    assert (await store.get(command.id)) == done
    errors = [s[2]["error"] for s in channel.sent if s[1] is Channel.ERRORS]
    assert errors == ["bad_result", "unknown_command"]


async def test_cancel_and_idempotency(setup):
    """A waiting command cancels once; an idempotency key returns the first command; unknown vehicles are 404."""
    service, _, _, _ = setup
    command, _ = await service.create("v1", "lock", idempotency_key="k")
    repeat, created = await service.create("v1", "lock", idempotency_key="k")
    assert (repeat.id, created) == (command.id, False)
    with pytest.raises(InvalidPayload, match="idempotency_key_reused"):
        await service.create("v1", "unlock", idempotency_key="k")
    cancelled = await service.cancel("v1", command.id, by="ops")
    assert (cancelled.state, cancelled.detail) == (CommandState.CANCELLED, "cancelled by ops")
    with pytest.raises(CommandClosed):
        await service.cancel("v1", command.id)
    with pytest.raises(NotFound):
        await service.create("nobody", "lock")


async def test_a_job_sends_at_its_rate_and_completes(setup):
    """Two vehicles a second: the third waits a second; the job completes when every command finishes."""
    service, clock, store, _ = setup
    job = await service.create_job(JobSelector(), "honk", rate=2.0, ttl_s=5.0)
    assert job.targets == ["v1", "v2", "v3"]
    await service.run_once()
    assert (await service.job(job.id)).progress.dispatched == 2
    clock.now += 0.5
    await service.run_once()
    assert (await service.job(job.id)).progress.dispatched == 2
    clock.now += 0.6
    await service.run_once()
    assert (await service.job(job.id)).progress.dispatched == 3
    clock.now += 10.0
    await service.run_once()
    await service.run_once()
    report = await service.job(job.id)
    assert report.state is JobState.COMPLETED
    assert report.progress.states["expired"] == 3
    assert len(await store.query(CommandQuery(job_id=job.id))) == 3
