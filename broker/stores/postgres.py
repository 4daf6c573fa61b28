"""The broker store on PostgreSQL: the hub's database, through its one connection pool.

A batch is one transaction. Its changes go to the server by kind, many at a time (one
statement over arrays per kind), so a batch of thousands of changes costs a few round
trips, not thousands. Changes are regrouped only
where the order cannot matter (see `_stages`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import psycopg

from broker.stores import sql
from broker.stores.protocol import (
    AckInflight,
    ApplyResult,
    Change,
    ClearRetained,
    Dequeue,
    Dropped,
    DropSession,
    Enqueue,
    Expired,
    PutIncoming,
    PutInflight,
    PutSession,
    QueueLimits,
    ReleaseIncoming,
    Retain,
    Snapshot,
    StoreStats,
    Subscribe,
    Unsubscribe,
)
from kernel import PostgresDatabase


def _pg(query: str) -> bytes:
    return query.replace("?", "%s").encode()


def _by_code_points(query: str) -> str:
    # The store hands out sessions and topics in code-point order on every backend.
    for column in ("topic_filter", "client_id", "topic"):
        query = query.replace(f"ORDER BY {column}", f'ORDER BY {column} COLLATE "C"')
        query = query.replace(f", {column}\n", f', {column} COLLATE "C"\n')
    return query


_ENQUEUE = b"""
INSERT INTO broker_queue (client_id, seq, topic, payload, qos, retain, properties, expires_at, size)
SELECT u.* FROM unnest(%s::text[], %s::bigint[], %s::text[], %b::bytea[], %s::int[], %s::bool[], %b::bytea[],
    %s::float8[], %s::bigint[]) AS u(client_id, seq, topic, payload, qos, retain, properties, expires_at, size)
WHERE EXISTS (SELECT 1 FROM broker_sessions s WHERE s.client_id = u.client_id)
ON CONFLICT (client_id, seq) DO NOTHING
RETURNING client_id, size
"""


def _upsert(table: str, columns: str, types: str, key: str, *, session: bool = True) -> bytes:
    """INSERT ... ON CONFLICT DO UPDATE of whole rows given as arrays, one per column."""
    names = [c.strip() for c in columns.split(",")]
    # Binary parameters: a bytea array in text form is hex-escaped element by element.
    arrays = ", ".join(f"%b::{t.strip()}[]" for t in types.split(","))
    keys = {k.strip() for k in key.split(",")}
    updates = ", ".join(f"{c} = excluded.{c}" for c in names if c not in keys)
    exists = " WHERE EXISTS (SELECT 1 FROM broker_sessions s WHERE s.client_id = u.client_id)" if session else ""
    return (
        f"INSERT INTO {table} ({columns}) SELECT u.* FROM unnest({arrays}) AS u({columns}){exists} "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
    ).encode()


_UPSERT_SESSION = _upsert(
    "broker_sessions",
    "client_id, protocol_version, expiry_interval_s, expires_at, username, created_at",
    "text, int, bigint, float8, text, float8",
    "client_id",
    session=False,
)
_SUBSCRIBE = _upsert(
    "broker_subscriptions",
    "client_id, topic_filter, qos, no_local, retain_as_published, retain_handling, subscription_id",
    "text, text, int, bool, bool, int, bigint",
    "client_id, topic_filter",
)
_PUT_INFLIGHT = _upsert(
    "broker_inflight",
    "client_id, packet_id, seq, state, topic, payload, qos, retain, properties, expires_at",
    "text, int, bigint, text, text, bytea, int, bool, bytea, float8",
    "client_id, packet_id",
)
_RETAIN = _upsert(
    "broker_retained",
    "topic, payload, qos, retain, properties, expires_at",
    "text, bytea, int, bool, bytea, float8",
    "topic",
    session=False,
)
_DEQUEUE = b"""
DELETE FROM broker_queue q USING unnest(%s::text[], %s::bigint[]) AS u(client_id, seq)
WHERE q.client_id = u.client_id AND q.seq = u.seq
RETURNING q.client_id, q.size
"""
_PUT_INCOMING = b"""
INSERT INTO broker_incoming (client_id, packet_id)
SELECT u.* FROM unnest(%s::text[], %s::int[]) AS u(client_id, packet_id)
WHERE EXISTS (SELECT 1 FROM broker_sessions s WHERE s.client_id = u.client_id)
ON CONFLICT (client_id, packet_id) DO NOTHING
"""
_UNSUBSCRIBE = b"""
DELETE FROM broker_subscriptions b USING unnest(%s::text[], %s::text[]) AS u(client_id, topic_filter)
WHERE b.client_id = u.client_id AND b.topic_filter = u.topic_filter
"""
_ACK_INFLIGHT = b"""
DELETE FROM broker_inflight i USING unnest(%s::text[], %s::int[]) AS u(client_id, packet_id)
WHERE i.client_id = u.client_id AND i.packet_id = u.packet_id
"""
_RELEASE_INCOMING = b"""
DELETE FROM broker_incoming i USING unnest(%s::text[], %s::int[]) AS u(client_id, packet_id)
WHERE i.client_id = u.client_id AND i.packet_id = u.packet_id
"""
_ADD_QUEUED = b"""
UPDATE broker_sessions s SET queued_count = s.queued_count + u.n, queued_bytes = s.queued_bytes + u.size
FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS u(client_id, n, size) WHERE s.client_id = u.client_id
RETURNING s.client_id, s.queued_count, s.queued_bytes
"""
_LOCK_SESSIONS = b"""
SELECT 1 FROM broker_sessions WHERE client_id = ANY(%s) ORDER BY client_id FOR NO KEY UPDATE
"""
_TRIM = _pg(sql.TRIM.replace("client_id IN ({ids})", "client_id = ANY(?)"))
# Queue, in-flight and incoming rows are only grouped by client id, so any collation does
# there, and their primary keys serve the order.
_LOAD = [
    _pg(_by_code_points(sql.LOAD_SESSIONS)),
    _pg(_by_code_points(sql.LOAD_SUBSCRIPTIONS)),
    _pg(sql.LOAD_QUEUE),
    _pg(sql.LOAD_INFLIGHT),
    _pg(sql.LOAD_INCOMING),
]
_LOAD_RETAINED = _pg(_by_code_points(sql.LOAD_RETAINED))


class PostgresBrokerStore:
    """Retained messages and persistent sessions in the hub's PostgreSQL database."""

    def __init__(self, db: PostgresDatabase, limits: QueueLimits | None = None) -> None:
        self.db = db
        self.limits = limits or QueueLimits()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def apply(self, changes: Sequence[Change]) -> ApplyResult:
        if not changes:
            return ApplyResult()
        async with self.db.connection() as conn, conn.transaction(), conn.cursor() as cur:
            return await _Batch(cur, self.limits).run(changes)

    async def load(self, now: float) -> Snapshot:
        # Binary results: payloads come as they are stored, not hex-escaped text twice their size.
        async with self.db.connection() as conn, conn.transaction(), conn.cursor(binary=True) as cur:
            # One snapshot of the database for every part.
            await cur.execute(b"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            rows: list[list[Any]] = []
            for query, args in zip(_LOAD, [(now,), (), (now,), (), ()], strict=True):
                await cur.execute(query, args)
                rows.append(await cur.fetchall())
            await cur.execute(_LOAD_RETAINED, (now,))
            retained = await cur.fetchall()
            await cur.execute(_pg(sql.LAST_SEQ))
            last = await cur.fetchone()
            sessions, subscriptions, queue, inflight, incoming = rows
            return sql.snapshot(sessions, subscriptions, queue, inflight, incoming, retained, last[0] if last else 0)

    async def expire(self, now: float) -> Expired:
        async with self.db.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(_pg(sql.EXPIRE_SESSIONS), (now,))
            sessions = sorted(r[0] for r in await cur.fetchall())
            await cur.execute(_pg(sql.EXPIRE_RETAINED), (now,))
            retained = cur.rowcount
            await cur.execute(_pg(sql.EXPIRE_QUEUED), (now,))
            queued = await cur.fetchall()
            await _add_queued(cur, _negated(queued))
            return Expired(sessions=sessions, retained=retained, queued=len(queued))

    async def stats(self) -> StoreStats:
        async with self.db.connection() as conn, conn.cursor() as cur:
            await cur.execute(_pg(sql.STATS_SESSIONS))
            row = await cur.fetchone()
            sessions, queued, queued_bytes = row if row else (0, 0, 0)
            await cur.execute(_pg(sql.COUNT_INFLIGHT))
            inflight = await cur.fetchone()
            await cur.execute(_pg(sql.COUNT_RETAINED))
            retained = await cur.fetchone()
            return StoreStats(
                sessions=int(sessions),
                queued_messages=int(queued),
                queued_bytes=int(queued_bytes),
                inflight=int(inflight[0]) if inflight else 0,
                retained=int(retained[0]) if retained else 0,
            )


class _Batch:
    """One `apply`: runs of changes of one kind, each sent as one statement or one pipeline."""

    def __init__(self, cur: psycopg.AsyncCursor[Any], limits: QueueLimits) -> None:
        self.cur = cur
        self.limits = limits
        self.added: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.enqueued: set[str] = set()

    async def run(self, changes: Sequence[Change]) -> ApplyResult:
        for stage in _stages(changes):
            for kind, run in stage.items():
                await self._run(kind, run)
        counters = await _add_queued(self.cur, self.added.items())
        # A session's queue can only have gone over a limit if it grew in this batch, and
        # then its new counters are here: no query to find the sessions over a limit.
        max_messages, max_bytes = self.limits.max_messages, self.limits.max_bytes
        over = sorted(c for c, n, size in counters if c in self.enqueued and (n > max_messages or size > max_bytes))
        return ApplyResult(await self._trim(over))

    async def _run(self, kind: type, run: list[Any]) -> None:
        cur = self.cur
        if kind is PutSession:
            await _columns(cur, _UPSERT_SESSION, _last({c.record.client_id: sql.session_row(c.record) for c in run}))
        elif kind is DropSession:
            gone = [c.client_id for c in run]
            await cur.execute(b"DELETE FROM broker_sessions WHERE client_id = ANY(%s)", (gone,))
            for client_id in gone:
                self.added.pop(client_id, None)
                self.enqueued.discard(client_id)
        elif kind is Subscribe:
            rows = {
                (c.client_id, c.subscription.topic_filter): sql.subscription_row(c.client_id, c.subscription)
                for c in run
            }
            await _columns(cur, _SUBSCRIBE, _last(rows, session=True))
        elif kind is Unsubscribe:
            await cur.execute(_UNSUBSCRIBE, ([c.client_id for c in run], [c.topic_filter for c in run]))
        elif kind is Enqueue:
            # One statement inserts in no set order: of two with one seq, the first is kept here, as in order.
            first = {(c.client_id, c.queued.seq): c for c in reversed(run)}
            await _columns(cur, _ENQUEUE, [sql.queued_row(c.client_id, c.queued) for c in reversed(first.values())])
            for client_id, size in await cur.fetchall():
                delta = self.added[client_id]
                delta[0] += 1
                delta[1] += size
                self.enqueued.add(client_id)
        elif kind is Dequeue:
            await cur.execute(_DEQUEUE, ([c.client_id for c in run], [c.seq for c in run]))
            for client_id, size in await cur.fetchall():
                delta = self.added[client_id]
                delta[0] -= 1
                delta[1] -= size
        elif kind is PutInflight:
            rows = {(c.client_id, c.inflight.packet_id): sql.inflight_row(c.client_id, c.inflight) for c in run}
            await _columns(cur, _PUT_INFLIGHT, _last(rows, session=True))
        elif kind is AckInflight:
            await cur.execute(_ACK_INFLIGHT, ([c.client_id for c in run], [c.packet_id for c in run]))
        elif kind is PutIncoming:
            await cur.execute(_PUT_INCOMING, ([c.client_id for c in run], [c.packet_id for c in run]))
        elif kind is ReleaseIncoming:
            await cur.execute(_RELEASE_INCOMING, ([c.client_id for c in run], [c.packet_id for c in run]))
        elif kind is Retain:
            await _columns(cur, _RETAIN, _last({c.message.topic: sql.message_row(c.message) for c in run}))
        elif kind is ClearRetained:
            await cur.execute(b"DELETE FROM broker_retained WHERE topic = ANY(%s)", ([c.topic for c in run],))
        else:
            raise TypeError(f"not a broker store change: {kind.__name__}")

    async def _trim(self, over: list[str]) -> list[Dropped]:
        if not over:
            return []
        bounds = (self.limits.max_messages, self.limits.max_bytes)
        await self.cur.execute(_TRIM, (over, *bounds))
        dropped = await self.cur.fetchall()
        await _add_queued(self.cur, _negated([(client_id, size) for client_id, _, size in dropped]))
        return [Dropped(client_id, seq) for client_id, seq, _ in sorted(dropped)]


def _key(change: Change) -> tuple[str | None, tuple[str, Any] | None]:
    """The session a change writes to (None: the retained messages) and the row, None for the whole session."""
    match change:
        case PutSession(record=record):
            return record.client_id, None
        case DropSession(client_id=c):
            return c, None
        case Subscribe(client_id=c, subscription=sub):
            return c, ("sub", sub.topic_filter)
        case Unsubscribe(client_id=c, topic_filter=topic_filter):
            return c, ("sub", topic_filter)
        case Enqueue(client_id=c, queued=queued):
            return c, ("queue", queued.seq)
        case Dequeue(client_id=c, seq=seq):
            return c, ("queue", seq)
        case PutInflight(client_id=c, inflight=inflight):
            return c, ("inflight", inflight.packet_id)
        case AckInflight(client_id=c, packet_id=packet_id):
            return c, ("inflight", packet_id)
        case PutIncoming(client_id=c, packet_id=packet_id) | ReleaseIncoming(client_id=c, packet_id=packet_id):
            return c, ("incoming", packet_id)
        case Retain(message=message):
            return None, ("retained", message.topic)
        case ClearRetained(topic=topic):
            return None, ("retained", topic)
        case _:
            raise TypeError(f"not a broker store change: {type(change).__name__}")


def _stages(changes: Sequence[Change]) -> list[dict[type, list[Change]]]:
    """The batch as stages run one after another, each one statement per kind of change.

    Two changes keep their order when they write the same row, or when one of them is to
    the whole session (PutSession, DropSession) and the other to that session: the later
    one goes to a later stage, except a change of the same kind to the same row, which one
    statement applies in order too. Other changes commute, so they share stages: a
    fan-out's queued, sent and acknowledged messages take two stages, not one per change.
    """
    stages: list[dict[type, list[Change]]] = []
    # Per session: the latest stage of any change to it, and of a change to the whole of it.
    last_any: dict[str | None, int] = {}
    last_whole: dict[str | None, int] = {}
    last_of_row: dict[tuple[str | None, tuple[str, Any]], tuple[int, type]] = {}
    for change in changes:
        kind = type(change)
        session, row = _key(change)
        if row is None:
            stage = last_any.get(session, -1) + 1
            last_whole[session] = stage
        else:
            stage = last_whole.get(session, -1) + 1
            previous = last_of_row.get((session, row))
            if previous is not None:
                stage = max(stage, previous[0] + (previous[1] is not kind))
            last_of_row[(session, row)] = (stage, kind)
        last_any[session] = max(last_any.get(session, -1), stage)
        while len(stages) <= stage:
            stages.append({})
        stages[stage].setdefault(kind, []).append(change)
    return stages


def _last(rows: dict[Any, tuple[Any, ...]], *, session: bool = False) -> list[tuple[Any, ...]]:
    # One statement may not update a row twice: of several changes to a row, the last is the
    # one that counts, as in order (a dict keeps the last value, at the first key's place).
    # The shared rows end with the client id again, for the SQLite store's EXISTS; not here.
    return [row[:-1] for row in rows.values()] if session else list(rows.values())


async def _columns(cur: psycopg.AsyncCursor[Any], statement: bytes, rows: list[tuple[Any, ...]]) -> None:
    await cur.execute(statement, [list(column) for column in zip(*rows, strict=True)])


def _negated(rows: Sequence[Any]) -> list[tuple[str, list[int]]]:
    removed: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
    for client_id, size in rows:
        removed[client_id][0] -= 1
        removed[client_id][1] -= size
    return list(removed.items())


async def _add_queued(cur: psycopg.AsyncCursor[Any], deltas: Any) -> list[tuple[str, int, int]]:
    """Move the sessions' queue counters; their new values (client id, messages, bytes)."""
    changed = sorted((client_id, n, size) for client_id, (n, size) in deltas if n or size)
    if not changed:
        return []
    columns = [list(column) for column in zip(*changed, strict=True)]
    # Rows locked in one order, so batches running side by side cannot deadlock on them.
    await cur.execute(_LOCK_SESSIONS, (columns[0],))
    await cur.execute(_ADD_QUEUED, columns)
    return [(str(c), int(n), int(size)) for c, n, size in await cur.fetchall()]
