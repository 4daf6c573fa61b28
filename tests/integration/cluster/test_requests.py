"""Forwarded twin writes on a real PostgreSQL: the answer commits with the change, and only under a live claim."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from cluster import (
    ClusterSettings,
    ForwardedWrites,
    Leases,
    ListenMetrics,
    ListenState,
    fence_of,
    install,
    partition_of,
)
from cluster.listening import hold_listen
from kernel import PostgresDatabase
from twin import OwnerUnavailable, TwinCreate, TwinService, running, twin_store

pytestmark = pytest.mark.postgres

K = 4


def _rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql.encode()).fetchall()


async def _claim_once_asked(forwarding: ForwardedWrites, owner: SimpleNamespace, url: str) -> list:
    """Once the request is stored, claim it as the owner (whose `ready` would have kept the write local)."""
    for _ in range(250):
        if await asyncio.to_thread(_rows, url, "SELECT count(*) FROM cluster_requests") != [(0,)]:
            break
        await asyncio.sleep(0.02)
    owner.ready = set(owner.ownership.tokens)
    try:
        return await forwarding._claim()
    finally:
        owner.ready = set()


@contextlib.asynccontextmanager
async def _asking_node(
    pg_url: str, vehicle: str, forward_timeout_s: float
) -> AsyncIterator[tuple[ForwardedWrites, SimpleNamespace, TwinService]]:
    """A node holding every lease, none of them ready, so it forwards even its own vehicles; `vehicle` exists."""
    async with PostgresDatabase(pg_url, pool_min_size=1, pool_max_size=4) as db:
        async with db.connection() as conn:
            await install(conn, K)
        held = (await Leases(db, "w1", partitions=K, lease_s=30).step({})).held
        db.set_fence(fence_of("w1", K, held))
        owner = SimpleNamespace(worker_id="w1", ready=set(), ownership=SimpleNamespace(tokens=held))
        settings = ClusterSettings(role="api", partitions=K, forward_timeout_s=forward_timeout_s, forward_poll_s=0.05)
        store = twin_store(db)
        async with store, running(TwinService(store)) as service:
            await asyncio.sleep(0.01)  # the consumer starts
            await service.apply(TwinCreate(vehicle, "default"))
            async with ForwardedWrites(settings, db, service, owner) as forwarding:  # type: ignore[arg-type]
                service.route = forwarding
                yield forwarding, owner, service


async def test_a_withdrawn_request_is_not_applied_and_a_claimed_one_is_applied_once(pg_url: str) -> None:
    """The owner's commit of a request withdrawn after its claim rolls back; the next one commits with its answer."""
    async with _asking_node(pg_url, "veh-1", forward_timeout_s=1.0) as (forwarding, owner, service):
        asking = asyncio.create_task(service.patch_desired("veh-1", {"charge_limit": 50}))
        claimed = await _claim_once_asked(forwarding, owner, pg_url)
        # The asking node gives up between the claim and the owner's commit.
        await asyncio.to_thread(_rows, pg_url, "UPDATE cluster_requests SET state = 'withdrawn' RETURNING id")
        await forwarding._apply(claimed[0])
        with pytest.raises(OwnerUnavailable):
            await asyncio.wait_for(asking, 5)
        assert _rows(pg_url, "SELECT version, coalesce(state->'desired', '{}') FROM twins") == [(1, {})]

        asking = asyncio.create_task(service.patch_desired("veh-1", {"charge_limit": 60}))
        claimed = await _claim_once_asked(forwarding, owner, pg_url)
        await forwarding._apply(claimed[0])
        doc = await asyncio.wait_for(asking, 5)
        assert (doc.version, doc.desired) == (2, {"charge_limit": 60})
        assert doc == await service.get_twin("veh-1")
        # A later pass finds nothing to take: it is done.
        owner.ready = set(owner.ownership.tokens)
        assert await forwarding._claim() == []
    assert _rows(pg_url, "SELECT count(*) FROM cluster_requests") == [(0,)]
    assert _rows(pg_url, "SELECT version FROM twins") == [(2,)]


async def test_a_request_left_waiting_past_its_deadline_is_withdrawn_and_never_claimed(pg_url: str) -> None:
    """No owner takes it in time: the caller gets OwnerUnavailable and a late owner finds nothing to apply."""
    async with _asking_node(pg_url, "veh-2", forward_timeout_s=0.3) as (forwarding, owner, service):
        with pytest.raises(OwnerUnavailable) as refused:
            await service.patch_desired("veh-2", {"a": 1})
        assert refused.value.retry_after_s == 8
        # A row left waiting past its deadline is never claimed; one within it is (the control).
        part = partition_of("veh-2", K)
        _rows(
            pg_url,
            "INSERT INTO cluster_requests (id, part, vehicle_id, write, requester, deadline) VALUES "
            f"('late', {part}, 'veh-2', '{{}}', 'w9', now() - interval '1 second'), "
            f"('due', {part}, 'veh-2', '{{}}', 'w9', now() + interval '1 minute') RETURNING id",
        )
        owner.ready = set(owner.ownership.tokens)
        assert [c.id for c in await forwarding._claim()] == ["due"]
    assert _rows(pg_url, "SELECT version, coalesce(state->'desired', '{}') FROM twins") == [(1, {})]


async def test_the_listener_reports_its_state_and_reconnects_after_its_connection_is_killed(pg_url: str) -> None:
    """What /healthz shows of the forwarded-writes listener: listening, lost, back, with one reconnect counted."""
    metrics = ListenMetrics(CollectorRegistry())
    async with PostgresDatabase(pg_url, pool_min_size=1, pool_max_size=4) as db:
        async with db.connection() as conn:
            await install(conn, K)
        owner = SimpleNamespace(worker_id="w1", ready=set(), ownership=SimpleNamespace(tokens={}))
        settings = ClusterSettings(role="api", partitions=K)
        store = twin_store(db)
        async with store, running(TwinService(store)) as service:
            forwarding = ForwardedWrites(settings, db, service, owner, metrics=metrics)  # type: ignore[arg-type]
            async with forwarding:
                await _until(lambda: forwarding.status()["listening"] is True)
                assert forwarding.status()["reconnects"] == 0
                killed = await asyncio.to_thread(
                    _rows,
                    pg_url,
                    # This session's database only: other test sessions may share the server.
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query = 'LISTEN \"fleethub_requests\"' AND datname = current_database()",
                )
                assert killed == [(True,)]
                await _until(lambda: forwarding.status()["reconnects"] == 1)
                await _until(lambda: forwarding.status()["listening"] is True)
                status = forwarding.status()
                assert status["last_error"]
                assert status["waiting"] == 0
                assert metrics.reconnects.labels("requests")._value.get() == 1
                assert metrics.listening.labels("requests")._value.get() == 1


async def _until(check: Callable[[], bool], wait_s: float = 10.0) -> None:
    deadline = time.monotonic() + wait_s
    while not check():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.02)


async def test_a_local_write_fenced_off_by_a_partition_move_goes_to_the_new_owner_once(pg_url: str) -> None:
    """w1 believes it owns the vehicle, but w2 took the lease: the fence refuses w1's commit, w2 applies it once."""
    async with (
        PostgresDatabase(pg_url, pool_min_size=1, pool_max_size=4) as db1,
        PostgresDatabase(pg_url, pool_min_size=1, pool_max_size=4) as db2,
    ):
        async with db1.connection() as conn:
            await install(conn, K)
        held1 = (await Leases(db1, "w1", partitions=K, lease_s=0.5).step({})).held
        db1.set_fence(fence_of("w1", K, held1))
        # w1 still counts every partition as its own (it has not noticed the move yet).
        w1 = SimpleNamespace(worker_id="w1", ready=set(held1), ownership=SimpleNamespace(tokens=held1))
        settings = ClusterSettings(role="api", partitions=K, forward_timeout_s=5.0, forward_poll_s=0.05)
        store1, store2 = twin_store(db1), twin_store(db2)
        async with store1, store2, running(TwinService(store1)) as svc1, running(TwinService(store2)) as svc2:
            await asyncio.sleep(0.01)  # the consumers start
            ids = [f"veh-{n}" for n in range(12)]
            for vid in ids:
                await svc1.apply(TwinCreate(vid, "default"))
            async with ForwardedWrites(settings, db1, svc1, w1) as forwarding1:  # type: ignore[arg-type]
                svc1.route = forwarding1
                await asyncio.sleep(0.7)  # w1's lease runs out; w2 takes its share of the partitions
                held2 = (await Leases(db2, "w2", partitions=K, lease_s=30).step({})).held
                db2.set_fence(fence_of("w2", K, held2))
                moved = next(v for v in ids if partition_of(v, K) in held2)
                kept = next(v for v in ids if partition_of(v, K) not in held2)
                # The positive control: on a partition w1 still holds, a write is local and commits.
                await Leases(db1, "w1", partitions=K, lease_s=30).step({p: held1[p] for p in held1 if p not in held2})
                await svc1.patch_desired(kept, {"charge_limit": 40})
                assert forwarding1.forwarded == 0
                w2 = SimpleNamespace(worker_id="w2", ready=set(), ownership=SimpleNamespace(tokens=held2))
                async with ForwardedWrites(settings, db2, svc2, w2) as forwarding2:  # type: ignore[arg-type]
                    asking = asyncio.create_task(svc1.patch_desired(moved, {"charge_limit": 70}))
                    claimed = await _claim_once_asked(forwarding2, w2, pg_url)
                    assert len(claimed) == 1
                    await forwarding2._apply(claimed[0])
                    doc = await asyncio.wait_for(asking, 5)
            assert forwarding1.forwarded == 1
            assert forwarding2.applied == 1
            assert (doc.version, doc.desired) == (2, {"charge_limit": 70})
            # Applied once: one version step for the write, none by the refused local attempt.
            versions = dict(_rows(pg_url, "SELECT vehicle_id, version FROM twins"))
            assert (versions[moved], versions[kept]) == (2, 2)
            assert _rows(pg_url, f"SELECT state->'desired' FROM twins WHERE vehicle_id = '{moved}'") == [
                ({"charge_limit": 70},)
            ]
            assert _rows(pg_url, "SELECT count(*) FROM cluster_requests") == [(0,)]


async def test_a_notification_that_fails_does_not_end_the_listener(pg_url: str) -> None:
    """The shared LISTEN loop logs a failing notification and serves the next on the same connection."""
    state = ListenState("requests")
    heard: list[str] = []

    async def take(payload: str) -> None:
        if payload == "bad":
            raise ValueError("a notification this node cannot take")
        heard.append(payload)

    task = asyncio.create_task(hold_listen(pg_url, state, "fleethub_test_listen", take))
    try:
        await _until(lambda: state.listening)
        await asyncio.to_thread(
            _rows, pg_url, "SELECT pg_notify('fleethub_test_listen', p) FROM unnest(ARRAY['bad', 'good']) AS p"
        )
        await _until(lambda: heard == ["good"])
        assert (state.listening, state.reconnects, state.last_error) == (True, 0, None)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
