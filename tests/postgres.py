"""Fixtures for a real PostgreSQL (stores, rules stores, hubs and `fleethub serve` on it).

A fresh database per session and a fresh schema per test (`pg_url`). Loaded as a
plugin by tests/conftest.py, so integration and e2e tests share one database.

Where the server comes from, in order: FLEETHUB_TEST_POSTGRES_URL; a server already
answering on 127.0.0.1:5432; a throwaway cluster started with initdb/pg_ctl in a
temporary directory on a free port (forced with FLEETHUB_TEST_POSTGRES_THROWAWAY=1).
With CI=true and none of these, the PostgreSQL tests fail instead of skipping.

On a server that preloads TimescaleDB, the session's database gets the extension once, in
`public` (every test schema's search path ends with it), so each test's store runs in
TimescaleDB mode; that database's background job scheduler is then stopped, so retention
and compression jobs the stores create can never drop or compress a test's rows mid-test.
The same tests run unchanged on plain PostgreSQL (native partitioning).
"""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

_LOCAL = ("postgresql://postgres@127.0.0.1:5432/postgres", "postgresql://127.0.0.1:5432/postgres")
_BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")


@dataclass
class PgServer:
    url: str  # of a database we may CREATE DATABASE from
    source: str
    version: str = ""
    timescaledb: str | None = None


_used: list[PgServer] = []


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in _BIN_DIRS:
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_cluster_owner() -> tuple[list[str], str]:
    """initdb refuses to run as root; run it as the postgres account then."""
    if os.geteuid() != 0:
        return [], pwd.getpwuid(os.geteuid()).pw_name
    owner = pwd.getpwnam("postgres")
    return ["runuser", "-u", owner.pw_name, "--"], owner.pw_name


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    explicit = os.environ.get("FLEETHUB_TEST_POSTGRES_URL")
    if explicit:
        yield PgServer(explicit, "FLEETHUB_TEST_POSTGRES_URL")
        return
    if os.environ.get("FLEETHUB_TEST_POSTGRES_THROWAWAY") != "1":
        for url in _LOCAL:
            if _answers(url):
                yield PgServer(url, "127.0.0.1:5432")
                return
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not (initdb and pg_ctl):
        message = "no PostgreSQL: set FLEETHUB_TEST_POSTGRES_URL, run one on 127.0.0.1:5432, or install initdb/pg_ctl"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    prefix, user = _as_cluster_owner()
    root = Path(tempfile.mkdtemp(prefix="fleethub-pg-"))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    shutil.chown(root, user)
    shutil.chown(sockets, user)
    port = _free_port()
    subprocess.run([*prefix, initdb, "-D", str(data), "-U", "postgres", "-A", "trust"], check=True, capture_output=True)
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield PgServer(f"postgresql://postgres@127.0.0.1:{port}/postgres", f"throwaway cluster on port {port}")
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def pg_database(pg_server: PgServer) -> Iterator[str]:
    """A database of our own for this session, dropped at the end."""
    name = f"fleethub_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        pg_server.version = str(conn.execute("SHOW server_version").fetchone()[0])
        row = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
        preload = str(conn.execute("SHOW shared_preload_libraries").fetchone()[0])
        pg_server.timescaledb = row[0] if row and "timescaledb" in preload else None
    _used.append(pg_server)
    url = _with_database(pg_server.url, name)
    if pg_server.timescaledb:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb WITH SCHEMA public")
            conn.execute("SELECT _timescaledb_functions.stop_background_workers()")
    try:
        yield url
    finally:
        with psycopg.connect(pg_server.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """A fresh schema for one test: the store's URL puts it first on the search path."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    sep = "&" if "?" in pg_database else "?"
    try:
        yield f"{pg_database}{sep}options={quote(f'-c search_path={schema},public')}"
    finally:
        with psycopg.connect(pg_database, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def pytest_terminal_summary(terminalreporter) -> None:
    for server in _used:
        ts = (
            f"TimescaleDB {server.timescaledb} available"
            if server.timescaledb
            else "no TimescaleDB (native partitioning)"
        )
        terminalreporter.write_line(f"PostgreSQL used by the tests: {server.version}, {ts}, from {server.source}")
