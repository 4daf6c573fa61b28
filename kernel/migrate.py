"""Numbered SQL migrations shipped in the `migrations` package, one folder per backend.

`migrations/sqlite/NNNN_name.sql` and `migrations/postgres/NNNN_name.sql`; on
PostgreSQL, `NNNN_name.<mode>.sql` applies only in its time-series mode ("native" or
"timescaledb"). Numbers order the migrations; gaps are allowed so parts of the hub can
own ranges (0010 rules, 0020 commands, 0030 security), and every missing number runs,
not only those above the highest applied one.
"""

from __future__ import annotations

import enum
import re
from importlib import resources

import msgspec

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_PG_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)(?:\.(native|timescaledb))?\.sql$")


class Migration(msgspec.Struct, frozen=True):
    version: int
    name: str
    sql: str


class TimeseriesMode(enum.Enum):
    """How PostgreSQL keeps history: native range partitions, or TimescaleDB hypertables."""

    NATIVE = "native"
    TIMESCALEDB = "timescaledb"


def load_migrations(backend: str) -> list[Migration]:
    """SQLite migrations (`backend` "sqlite") in version order."""
    folder = resources.files("migrations").joinpath(backend)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"{backend} migrations have duplicate numbers: {versions}")
    return found


def load_pg_migrations(mode: TimeseriesMode) -> list[Migration]:
    """PostgreSQL migrations for `mode` in version order: those for every mode and those for this one."""
    folder = resources.files("migrations").joinpath("postgres")
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        match = _PG_NAME.match(entry.name)
        if not match or match.group(3) not in {None, mode.value}:
            continue
        version = int(match.group(1))
        if version in found:
            raise RuntimeError(f"postgres migration {version:04d} exists both for all modes and for {mode.value}")
        name = match.group(2) + (f".{match.group(3)}" if match.group(3) else "")
        found[version] = Migration(version, name, entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def split_statements(sql: str) -> list[str]:
    """Split a migration into statements on semicolons at line ends (no procedural bodies here)."""
    statements, current = [], []
    for line in sql.splitlines():
        stripped = line.strip()
        if stripped.startswith("--") or not stripped:
            continue
        current.append(line)
        if stripped.endswith(";"):
            statements.append("\n".join(current))
            current = []
    if current:
        statements.append("\n".join(current))
    return statements
