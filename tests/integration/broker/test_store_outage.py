"""The broker store's writer waits out a database that cannot commit: nothing is acknowledged, nothing is lost."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from broker.stores import (
    BrokerStoreMetrics,
    Enqueue,
    Message,
    PostgresBrokerStore,
    PutSession,
    Queued,
    SessionRecord,
    SqliteBrokerStore,
    StoreWriter,
    WriterSettings,
)
from kernel import PostgresDatabase, SqliteDatabase
from tests.postgres import _as_cluster_owner, _binary, _free_port


class OwnPostgres:
    """A PostgreSQL cluster of this test's own, so it can be stopped and started again."""

    def __init__(self, root: Path) -> None:
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        if not (initdb and pg_ctl):
            message = "no initdb/pg_ctl to run a PostgreSQL of the test's own"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        self.pg_ctl = pg_ctl
        self.prefix, user = _as_cluster_owner()
        self.data, sockets = root / "data", root / "run"
        sockets.mkdir()
        shutil.chown(root, user)
        shutil.chown(sockets, user)
        self.port = _free_port()
        self.log = root / "log"
        subprocess.run(
            [*self.prefix, initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust"],
            check=True,
            capture_output=True,
        )
        self.options = f"-p {self.port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", str(self.data), "-o", self.options, "-l", str(self.log), "-w", "start"],
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"],
            check=False,
            capture_output=True,
        )


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    root = Path(tempfile.mkdtemp(prefix="fleethub-pg-outage-"))
    try:
        server = OwnPostgres(root)
        server.start()
        yield server
    finally:
        if "server" in locals():
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def enqueue(seq: int) -> Enqueue:
    return Enqueue("dash-1", Queued(seq, Message("alerts/default/high/overheat/v1", b'{"t": 91}', 1)))


@pytest.mark.postgres
async def test_commits_wait_out_a_postgres_outage(own_postgres) -> None:
    """While PostgreSQL is down a commit is retried and its caller keeps waiting; it lands once the server is back."""
    registry = CollectorRegistry()
    metrics = BrokerStoreMetrics(registry)
    settings = WriterSettings(retry_max_s=0.5, close_timeout_s=30)
    async with (
        PostgresDatabase(own_postgres.url, pool_min_size=1, pool_max_size=2) as db,
        StoreWriter(PostgresBrokerStore(db), settings, metrics=metrics) as writer,
    ):
        await writer.write([PutSession(SessionRecord("dash-1", 4, 3600)), enqueue(1)])
        own_postgres.stop()
        waiting = writer.put([enqueue(2)])
        for _ in range(600):
            if registry.get_sample_value("fleethub_mqtt_store_commit_failures_total"):
                break
            await asyncio.sleep(0.05)
        # The commit has failed at least once, and its caller is still waiting: nothing acknowledged.
        assert registry.get_sample_value("fleethub_mqtt_store_commit_failures_total") >= 1
        assert not waiting.done()
        own_postgres.start()
        await asyncio.wait_for(waiting, 60)
    async with PostgresDatabase(own_postgres.url, pool_min_size=1, pool_max_size=1) as db:
        snapshot = await PostgresBrokerStore(db).load(0.0)
    assert [q.seq for q in snapshot.sessions[0].queue] == [1, 2]


async def test_commits_wait_out_a_locked_sqlite_file(tmp_path) -> None:
    """Another process holding SQLite's write lock past the busy timeout: the commit is retried, not refused."""
    path = tmp_path / "hub.db"
    registry = CollectorRegistry()
    settings = WriterSettings(retry_max_s=0.5, close_timeout_s=30)
    async with (
        SqliteDatabase(f"sqlite:///{path}") as db,
        StoreWriter(SqliteBrokerStore(db), settings, metrics=BrokerStoreMetrics(registry)) as writer,
    ):
        await writer.write([PutSession(SessionRecord("dash-1", 4, 3600)), enqueue(1)])
        lock = sqlite3.connect(path, isolation_level=None, timeout=30)
        lock.execute("BEGIN IMMEDIATE")
        try:
            waiting = writer.put([enqueue(2)])
            # SQLite's busy timeout is 5 s; past it the commit fails as transient and is retried.
            for _ in range(600):
                if registry.get_sample_value("fleethub_mqtt_store_commit_failures_total"):
                    break
                await asyncio.sleep(0.05)
            assert registry.get_sample_value("fleethub_mqtt_store_commit_failures_total") >= 1
            assert not waiting.done()
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        await asyncio.wait_for(waiting, 60)
        snapshot = await SqliteBrokerStore(db).load(0.0)
    assert [q.seq for q in snapshot.sessions[0].queue] == [1, 2]
