"""Numbered SQL migrations shipped in the `migrations` package, one folder per backend."""

from __future__ import annotations

import re
from importlib import resources

import msgspec

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class Migration(msgspec.Struct, frozen=True):
    version: int
    name: str
    sql: str


def load_migrations(backend: str) -> list[Migration]:
    """Migrations for `backend` ("sqlite" or "postgres") in version order."""
    folder = resources.files("migrations").joinpath(backend)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    # Numbers order the migrations; gaps are allowed so parts of the hub can own ranges.
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"{backend} migrations have duplicate numbers: {versions}")
    return found


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
