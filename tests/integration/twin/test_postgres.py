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

from kernel import PostgresDatabase, TimeseriesMode
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


def _retention_job(url: str, table: str) -> tuple[int, str] | None:
    """TimescaleDB's retention job on one of this schema's hypertables: (id, drop_after)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT job_id, (config ->> 'drop_after')::interval::text FROM timescaledb_information.jobs "
            "WHERE proc_name = 'policy_retention' AND hypertable_schema = current_schema() AND hypertable_name = %s",
            (table,),
        ).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def _run_job(url: str, job_id: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CALL run_job(%s)", (job_id,))


async def test_retention_drops_whole_old_days_and_a_backfilled_day_comes_back(pg_url: str) -> None:
    """Old rows go a whole day at a time (native partitions, TimescaleDB chunks; TimescaleDB's retention
    job is there too and finds nothing more to drop), the cutoff is the same UTC day boundary in both
    modes, and an old row written again lands in a recreated day."""
    now = time.time()
    today = int(now // DAY * DAY)
    async with _store(pg_url, premake_partitions=2, retention_days=30) as store:
        native = store.mode is TimeseriesMode.NATIVE
        if native:
            expected = {partition_name("history", today + k * DAY) for k in range(3)}
            assert expected <= _partitions(pg_url, "history")
        old = today - 40 * DAY + 5
        await store.write_batch([], [HistoryRow("v1", old, now, 1, {"a": 1}), HistoryRow("v1", now, now, 2, {"a": 2})])
        report = await store.maintain(now)
        assert report.retention_cutoff == today - 30 * DAY
        if native:
            assert report.partitions_dropped == [
                partition_name("history", today - 40 * DAY),
                partition_name("history_1m", today - 40 * DAY),
            ]
        else:
            # The old day's chunk of history (the rollup's chunks are a week wide); TimescaleDB's own job
            # would drop the same.
            assert len(report.partitions_dropped) == 1
            job = _retention_job(pg_url, "history")
            assert job is not None
            assert job[1] == "30 days"
            _run_job(pg_url, job[0])
        assert [r.data for r in await store.history(HistoryQuery("v1"))] == [{"a": 2}]
        # The dropped day is recreated if an old row turns up again.
        await store.write_batch([], [HistoryRow("v1", old, now, 3, {"a": 3})])
        assert len(await store.history(HistoryQuery("v1"))) == 2


async def test_timescaledb_jobs_are_kept_across_restarts_and_changed_only_with_their_setting(pg_url: str) -> None:
    """A restart with the same settings keeps every job (same ids); a new retention replaces that job only."""
    async with _store(pg_url, retention_days=30, compress_after_days=7) as store:
        if store.mode is not TimeseriesMode.TIMESCALEDB:
            pytest.skip("TimescaleDB's jobs: this server has no TimescaleDB (native partitioning has no jobs)")
    with psycopg.connect(pg_url) as conn:
        jobs = "SELECT proc_name, hypertable_name, job_id FROM timescaledb_information.jobs "
        jobs += "WHERE hypertable_schema = current_schema() ORDER BY 1, 2"
        first = conn.execute(jobs).fetchall()
    assert [(p, t) for p, t, _ in first] == [
        ("policy_compression", "history"),
        ("policy_retention", "history"),
        ("policy_retention", "history_1m"),
    ]
    async with _store(pg_url, retention_days=30, compress_after_days=7):
        pass
    with psycopg.connect(pg_url) as conn:
        assert conn.execute(jobs).fetchall() == first
    async with _store(pg_url, retention_days=60, compress_after_days=7):
        pass
    with psycopg.connect(pg_url) as conn:
        after = {(p, t): j for p, t, j in conn.execute(jobs).fetchall()}
    before = {(p, t): j for p, t, j in first}
    assert after[("policy_compression", "history")] == before[("policy_compression", "history")]
    assert after[("policy_retention", "history")] != before[("policy_retention", "history")]
    assert _retention_job(pg_url, "history_1m")[1] == "60 days"


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


async def test_an_older_schemas_unread_continuous_aggregate_is_dropped(pg_url: str) -> None:
    """A database from before migration 5 loses history_activity_1m and its refresh job; new ones never had it."""
    async with _store(pg_url) as store:
        if store.mode is not TimeseriesMode.TIMESCALEDB:
            pytest.skip("a TimescaleDB schema's migration: this server has no TimescaleDB")
    views = "SELECT count(*) FROM timescaledb_information.continuous_aggregates WHERE view_schema = current_schema()"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute(views).fetchone() == (0,)
        # As the old migration 3 left it, with its policy, and migration 5 not yet applied.
        conn.execute(
            "CREATE MATERIALIZED VIEW history_activity_1m WITH (timescaledb.continuous) AS "
            "SELECT vehicle_id, time_bucket(INTERVAL '1 minute', ts) AS bucket, count(*) AS rows "
            "FROM history GROUP BY 1, 2 WITH NO DATA"
        )
        conn.execute(
            "SELECT add_continuous_aggregate_policy('history_activity_1m', start_offset => INTERVAL '2 days', "
            "end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute')"
        )
        conn.execute("DELETE FROM schema_version WHERE version = 5")
        assert conn.execute(views).fetchone() == (1,)
    async with _store(pg_url):
        pass
    with psycopg.connect(pg_url) as conn:
        assert conn.execute(views).fetchone() == (0,)
        assert conn.execute("SELECT 1 FROM schema_version WHERE version = 5").fetchone() == (1,)
