"""The dead-letter seam: items the database refused, kept with their reason.

A value the database rejects (deterministically: the same write fails the same way)
would wedge the pipeline if retried. The twin service finds the offending item by
splitting the failed batch and hands it here instead; everyone else's data commits.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol, assert_never

import msgspec

from kernel import Database, PostgresDatabase, SqliteDatabase


class DeadLetter(msgspec.Struct, frozen=True):
    id: str
    vehicle_id: str
    # The vehicle's fleet when its twin was known, for fleet-scoped readers.
    fleet: str | None
    # The message kind (`telemetry`, `twin/rejected`, ...).
    kind: str
    # The topic below `vehicles/{vid}/` it arrived on.
    topic: str
    payload: bytes
    reason: str
    detail: str
    received_at: float
    quarantined_at: float

    @staticmethod
    def new_id() -> str:
        return secrets.token_hex(8)


class DeadLetterQuery(msgspec.Struct, frozen=True):
    # None: every fleet; otherwise only letters of these fleets.
    fleets: frozenset[str] | None = None
    vehicle_id: str | None = None
    limit: int = 100
    # Keyset: letters strictly older than (quarantined_at, id).
    before: tuple[float, str] | None = None


class DeadLetterStore(Protocol):
    async def add(self, letter: DeadLetter) -> None: ...

    async def query(self, query: DeadLetterQuery) -> list[DeadLetter]:
        """Newest first."""
        ...

    async def count(self) -> int: ...


_COLUMNS = "id, vehicle_id, fleet, kind, topic, payload, reason, detail, received_at, quarantined_at"


def _row(letter: DeadLetter) -> tuple[Any, ...]:
    return (
        letter.id,
        letter.vehicle_id,
        letter.fleet,
        letter.kind,
        letter.topic,
        letter.payload,
        letter.reason,
        letter.detail,
        letter.received_at,
        letter.quarantined_at,
    )


def _letter(row: Sequence[Any]) -> DeadLetter:
    return DeadLetter(
        row[0], row[1], row[2], row[3], row[4], bytes(row[5]), row[6], row[7], float(row[8]), float(row[9])
    )


def _where(query: DeadLetterQuery, mark: str) -> tuple[str, list[Any]]:
    where, args = ["1=1"], list[Any]()
    if query.fleets is not None:
        fleets = sorted(query.fleets)
        where.append(f"fleet IN ({','.join([mark] * len(fleets))})" if fleets else "1=0")
        args.extend(fleets)
    if query.vehicle_id is not None:
        where.append(f"vehicle_id = {mark}")
        args.append(query.vehicle_id)
    if query.before is not None:
        where.append(f"(quarantined_at < {mark} OR (quarantined_at = {mark} AND id < {mark}))")
        args.extend([query.before[0], query.before[0], query.before[1]])
    return " AND ".join(where), args


def _insert(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    conn.execute(f"INSERT OR IGNORE INTO dead_letters ({_COLUMNS}) VALUES ({','.join('?' * 10)})", row)


class SqliteDeadLetters:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def add(self, letter: DeadLetter) -> None:
        await self.db.write(_insert, _row(letter))

    async def query(self, query: DeadLetterQuery) -> list[DeadLetter]:
        where, args = _where(query, "?")
        sql = f"SELECT {_COLUMNS} FROM dead_letters WHERE {where} ORDER BY quarantined_at DESC, id DESC LIMIT ?"
        return [_letter(r) for r in await self.db.fetch(sql, (*args, query.limit))]

    async def count(self) -> int:
        rows = await self.db.fetch("SELECT COUNT(*) FROM dead_letters")
        return int(rows[0][0])


class PostgresDeadLetters:
    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    async def add(self, letter: DeadLetter) -> None:
        sql = f"INSERT INTO dead_letters ({_COLUMNS}) VALUES ({','.join(['%s'] * 10)}) ON CONFLICT (id) DO NOTHING"
        async with self.db.connection() as conn:
            await conn.execute(sql.encode(), _row(letter))

    async def query(self, query: DeadLetterQuery) -> list[DeadLetter]:
        where, args = _where(query, "%s")
        sql = f"SELECT {_COLUMNS} FROM dead_letters WHERE {where} ORDER BY quarantined_at DESC, id DESC LIMIT %s"
        async with self.db.connection() as conn:
            cur = await conn.execute(sql.encode(), (*args, query.limit))
            return [_letter(r) for r in await cur.fetchall()]

    async def count(self) -> int:
        async with self.db.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM dead_letters")
            row = await cur.fetchone()
        return int(row[0]) if row else 0


class MemoryDeadLetters:
    """Dead letters in a list, for tests of the twin service without a database."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def add(self, letter: DeadLetter) -> None:
        if all(known.id != letter.id for known in self.letters):
            self.letters.append(letter)

    async def query(self, query: DeadLetterQuery) -> list[DeadLetter]:
        found = sorted(self.letters, key=lambda d: (d.quarantined_at, d.id), reverse=True)
        if query.fleets is not None:
            found = [d for d in found if d.fleet in query.fleets]
        if query.vehicle_id is not None:
            found = [d for d in found if d.vehicle_id == query.vehicle_id]
        if query.before is not None:
            before = query.before
            found = [d for d in found if (d.quarantined_at, d.id) < before]
        return found[: query.limit]

    async def count(self) -> int:
        return len(self.letters)


def dead_letter_store(db: Database) -> DeadLetterStore:
    match db:
        case SqliteDatabase():
            return SqliteDeadLetters(db)
        case PostgresDatabase():
            return PostgresDeadLetters(db)
        case _:
            assert_never(db)
