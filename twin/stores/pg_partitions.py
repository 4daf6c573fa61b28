"""Native range partitions of `history` and its rollup, for servers without TimescaleDB.

Both tables are cut at the same boundaries (multiples of the partition width since the
Unix epoch, so whole UTC days by default) and partitions are named after their UTC
start: `history_p20240115_00` and `history_1m_p20240115_00`. Creation happens ahead of
time (maintenance keeps `premake` partitions ready) and on demand before a batch that
needs one; retention drops whole partitions of both tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from kernel import PostgresDatabase

TABLES = ("history", "history_1m")
_SUFFIX = re.compile(r"_p(\d{8})_(\d{2})$")
_LOCK = "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':fleethub:partitions'))"


def partition_name(table: str, start: int) -> str:
    return f"{table}_p{datetime.fromtimestamp(start, UTC):%Y%m%d_%H}"


def _start_of(name: str) -> int | None:
    match = _SUFFIX.search(name)
    if not match:
        return None
    return int(datetime.strptime(match.group(1) + match.group(2), "%Y%m%d%H").replace(tzinfo=UTC).timestamp())


class Partitions:
    """Which partitions exist (cached) and the DDL to add and drop them."""

    def __init__(self, width_hours: int, premake: int) -> None:
        self.width = width_hours * 3600
        self.premake = premake
        self.known: set[int] = set()

    def start_of(self, ts: float) -> int:
        return int(ts // self.width * self.width)

    def missing(self, timestamps: Iterable[float]) -> set[int]:
        return {self.start_of(ts) for ts in timestamps} - self.known

    async def load(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Read the existing partitions; a partition missing from either table counts as missing."""
        cur = await conn.execute(
            "SELECT p.relname, c.relname FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE i.inhparent IN (to_regclass('history'), to_regclass('history_1m'))"
        )
        per_table: dict[str, set[int]] = {t: set() for t in TABLES}
        for parent, child in await cur.fetchall():
            start = _start_of(str(child))
            if start is not None and parent in per_table:
                per_table[str(parent)].add(start)
        self.known = per_table["history"] & per_table["history_1m"]

    async def ensure(self, db: PostgresDatabase, starts: Iterable[int]) -> list[str]:
        """Create the partitions beginning at `starts` in both tables; returns the names created."""
        wanted = sorted(set(starts) - self.known)
        if not wanted:
            return []
        created: list[str] = []
        async with db.connection() as conn, conn.transaction():
            # Serialise with other hub workers and with retention; IF NOT EXISTS covers the rest.
            await conn.execute(_LOCK)
            for start in wanted:
                lo, hi = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(start + self.width, UTC)
                for table in TABLES:
                    name = partition_name(table, start)
                    exists = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
                    row = await exists.fetchone()
                    if row and row[0]:
                        continue
                    await conn.execute(
                        sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                            sql.Identifier(name), sql.Identifier(table), sql.Literal(lo), sql.Literal(hi)
                        )
                    )
                    created.append(name)
        self.known.update(wanted)
        return created

    async def premake_from(self, db: PostgresDatabase, now: float) -> list[str]:
        first = self.start_of(now)
        return await self.ensure(db, (first + k * self.width for k in range(self.premake + 1)))

    async def drop_before(self, db: PostgresDatabase, cutoff: float) -> list[str]:
        """Drop every partition that ends at or before `cutoff`, in both tables."""
        async with db.connection() as conn:
            await self.load(conn)
            old = sorted(s for s in self.known if s + self.width <= cutoff)
            dropped: list[str] = []
            if not old:
                return dropped
            async with conn.transaction():
                await conn.execute(_LOCK)
                for start in old:
                    for table in TABLES:
                        name = partition_name(table, start)
                        await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
                        dropped.append(name)
            self.known.difference_update(old)
            return dropped
