"""The twin store on PostgreSQL: partitions, NUL in strings, and losing the connection mid-batch."""

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from kernel import PostgresDatabase
from twin import (
    HistoryOptions,
    HistoryQuery,
    HistoryRow,
    Inbound,
    IngestMetrics,
    IngestSettings,
    MessageKind,
    PointQuery,
    PostgresStore,
    TwinService,
    TwinState,
    VehicleSelector,
)
from twin import running as run_service
from twin.stores.pg_partitions import partition_name

pytestmark = pytest.mark.postgres

DAY = 86_400


@contextlib.asynccontextmanager
async def _store(url: str, **options: int) -> AsyncIterator[PostgresStore]:
    async with (
        PostgresDatabase(url, pool_min_size=1, pool_max_size=4) as db,
        PostgresStore(db, options=HistoryOptions(**options)) as store,
    ):
        yield store


def _partitions(url: str, parent: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            (parent,),
        ).fetchall()
    return {r[0] for r in rows}


async def test_partitions_premade_created_for_backfill_and_dropped_by_retention(pg_url: str) -> None:
    """Partitions exist ahead of now, appear on demand for old rows, and go whole with retention."""
    now = time.time()
    today = int(now // DAY * DAY)
    async with _store(pg_url, premake_partitions=2, retention_days=30) as store:
        expected = {partition_name("history", today + k * DAY) for k in range(3)}
        assert expected <= _partitions(pg_url, "history")
        old = today - 40 * DAY + 5
        await store.write_batch([], [HistoryRow("v1", old, now, 1, {"a": 1}), HistoryRow("v1", now, now, 2, {"a": 2})])
        assert partition_name("history", today - 40 * DAY) in _partitions(pg_url, "history")
        assert partition_name("history_1m", today - 40 * DAY) in _partitions(pg_url, "history_1m")
        report = await store.maintain(now)
        assert report.partitions_dropped == [
            partition_name("history", today - 40 * DAY),
            partition_name("history_1m", today - 40 * DAY),
        ]
        assert [r.data for r in await store.history(HistoryQuery("v1"))] == [{"a": 2}]
        # The dropped day is recreated if an old row turns up again.
        await store.write_batch([], [HistoryRow("v1", old, now, 3, {"a": 3})])
        assert len(await store.history(HistoryQuery("v1"))) == 2


async def test_nul_in_strings_does_not_poison_the_batch(pg_url: str) -> None:
    """jsonb cannot hold U+0000: it is stored as U+FFFD, escaped backslashes left alone."""
    async with _store(pg_url) as store:
        data = {"msg": "a\x00b", "path": "C:\\u0000", "tags": ["\x00"]}
        twin = TwinState("v1", 1.0, 1.0, tags={"note": "x\x00"})
        await store.write_batch([twin], [HistoryRow("v1", 1.0, 1.0, None, data)])
        (row,) = await store.history(HistoryQuery("v1"))
        assert row.data == {"msg": "a\ufffdb", "path": "C:\\u0000", "tags": ["\ufffd"]}
        loaded = await store.load_twin("v1")
        assert loaded is not None
        assert loaded.tags == {"note": "x\ufffd"}


def _kill_pool(admin: psycopg.Connection, app: str) -> int:
    rows = admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = %s AND pid <> pg_backend_pid()",
        (app,),
    ).fetchall()
    return len(rows)


async def test_pool_recovers_after_its_connections_are_killed(pg_url: str) -> None:
    """With every pooled connection terminated between calls, the next call still succeeds."""
    url = f"{pg_url}&application_name=fleethub-recover"
    async with _store(url) as store:
        await store.write_batch([], [HistoryRow("v1", 1.0, 1.0, 1, {"a": 1})])
        with psycopg.connect(pg_url, autocommit=True) as admin:
            assert _kill_pool(admin, "fleethub-recover") >= 1
        await store.ping()
        assert len(await store.history(HistoryQuery("v1"))) == 1


async def test_connection_lost_mid_batch_loses_nothing_acknowledged(pg_url: str) -> None:
    """Backends killed inside batches and from outside: every acknowledged message is stored once."""
    # Unique, so concurrent runs of this suite on the same server never kill each other's backends.
    app = f"fleethub-drop-test-{uuid.uuid4().hex[:8]}"
    url = f"{pg_url}&application_name={app}"
    registry = CollectorRegistry()
    async with _store(url) as store:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            # Batches 3, 5 and 8 (counting retries) die after their history rows are in,
            # while the twin upsert runs: the connection goes away mid-transaction.
            admin.execute("""
                CREATE SEQUENCE kill_switch;
                CREATE FUNCTION die_mid_batch() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF nextval('kill_switch') IN (3, 5, 8) THEN
                        PERFORM pg_terminate_backend(pg_backend_pid());
                    END IF;
                    RETURN NULL;
                END $$;
                CREATE TRIGGER die_mid_batch AFTER INSERT ON twins FOR EACH STATEMENT EXECUTE FUNCTION die_mid_batch();
            """)
            service = TwinService(
                store,
                settings=IngestSettings(commit_retry_max_s=0.1, batch_max=20),
                metrics=IngestMetrics(registry),
            )
            vehicles, per_vehicle = 12, 30
            async with run_service(service):
                loop = asyncio.get_running_loop()
                acks = []
                killed = 0
                for k in range(per_vehicle):
                    for v in range(vehicles):
                        ack = loop.create_future()
                        body = {"soc": 100 - k, "speed": k, "ts": 1_700_000_000 + k, "seq": k}
                        item = Inbound(
                            f"veh-{v}", MessageKind.TELEMETRY, json.dumps(body).encode(), time.time(), 1, ack
                        )
                        await service.submit(item)
                        acks.append(ack)
                    if k in {10, 20}:
                        # And from outside, between and during batches.
                        await asyncio.sleep(0.02)
                        killed += _kill_pool(admin, app)
                await asyncio.wait_for(asyncio.gather(*acks), timeout=30)
    assert killed >= 1
    failures = registry.get_sample_value("fleethub_ingest_commit_failures_total")
    assert failures is not None
    assert failures >= 3
    async with _store(pg_url) as reopened:
        for v in range(vehicles):
            page = await reopened.history_page(PointQuery(VehicleSelector.one(f"veh-{v}"), limit=1000))
            assert [r.seq for r in page.rows] == list(range(per_vehicle))
            twin = await reopened.load_twin(f"veh-{v}")
            assert twin is not None
            assert twin.version == per_vehicle
            assert twin.reported["soc"].value == 100 - (per_vehicle - 1)


def test_partition_names_are_utc_starts() -> None:
    """Partition names carry their UTC start, so an operator can read them."""
    start = int(datetime(2024, 1, 15, tzinfo=UTC).timestamp())
    assert partition_name("history", start) == "history_p20240115_00"
    assert partition_name("history_1m", start + 6 * 3600) == "history_1m_p20240115_06"
