"""`fleethub backup` and `fleethub restore` for a SQLite store.

The backup uses SQLite's online backup API in one step: it reads one consistent snapshot
while the hub keeps writing (in WAL mode a reader never blocks the writer), into a file
beside the target that is renamed into place only once it is complete and checked, so a
failed or interrupted backup never leaves a half-written file under the backup's name.
A backup in steps would restart whenever the hub commits, which under steady ingest is
always. PostgreSQL has its own tools (pg_dump, pg_restore; see docs/operations.md).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from kernel import ConfigError, StoreError, sqlite_path

# How long the backup waits for a lock the hub holds (a checkpoint) before it gives up.
_BUSY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Copied:
    path: Path
    bytes: int
    schema_version: int
    vehicles: int
    history_rows: int


def _database_file(url: str) -> Path:
    if not url.startswith("sqlite:"):
        raise ConfigError(
            "fleethub backup and restore work on a SQLite store; back up PostgreSQL with pg_dump "
            "(docs/operations.md, Backup and restore)"
        )
    path = sqlite_path(url)
    if path == ":memory:":
        raise ConfigError("an in-memory database has nothing to back up")
    return Path(path)


def _check(conn: sqlite3.Connection, what: Path) -> tuple[int, int, int]:
    """Integrity, and what the copy holds: schema version, vehicles, history rows."""
    verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
    if verdict != "ok":
        raise StoreError(f"{what} is damaged: {verdict}")
    try:
        version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
        vehicles = conn.execute("SELECT count(*) FROM twins").fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM history").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{what} is not a fleethub database: {exc}") from None
    return int(version), int(vehicles), int(rows)


def _copy(source: sqlite3.Connection, target: Path) -> Copied:
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        with contextlib.closing(sqlite3.connect(partial)) as out:
            source.backup(out)  # every page in one step: one consistent snapshot
            out.execute("PRAGMA journal_mode=DELETE")  # a backup is one self-contained file
            version, vehicles, rows = _check(out, target)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Copied(target, target.stat().st_size, version, vehicles, rows)


def backup(url: str, output: Path) -> Copied:
    """Copy the store at `url` to `output` while the hub may be running."""
    source_file = _database_file(url)
    if not source_file.is_file():
        raise ConfigError(f"no database at {source_file} (from {url})")
    if output.resolve() == source_file.resolve():
        raise ConfigError("the backup must go to another file than the database")
    output.parent.mkdir(parents=True, exist_ok=True)
    uri = f"{source_file.resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_S)) as source:
        return _copy(source, output)


def restore(backup_file: Path, url: str, *, force: bool) -> Copied:
    """Replace the store at `url` with `backup_file`; the hub must be stopped.

    Refuses to overwrite a database that holds vehicles unless `force`: a restore throws away
    whatever the hub stored since the backup was taken.
    """
    target = _database_file(url)
    if not backup_file.is_file():
        raise ConfigError(f"no backup at {backup_file}")
    with contextlib.closing(sqlite3.connect(f"{backup_file.resolve().as_uri()}?mode=ro", uri=True)) as source:
        _check(source, backup_file)
        if target.exists() and not force:
            with contextlib.closing(sqlite3.connect(target)) as existing:
                try:
                    held = existing.execute("SELECT count(*) FROM twins").fetchone()[0]
                except sqlite3.DatabaseError:
                    held = 0
            if held:
                raise ConfigError(
                    f"{target} holds {held} vehicles; stop the hub and add --force to replace it with the backup"
                )
        target.parent.mkdir(parents=True, exist_ok=True)
        restored = _copy(source, target)
    # The old database's write-ahead log belongs to the replaced file; left behind it would be replayed into the copy.
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    return restored
