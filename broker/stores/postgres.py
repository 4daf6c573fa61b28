"""The broker store on PostgreSQL: the hub's database, through its one connection pool.

A batch is one transaction. Consecutive changes of one kind go to the server together
(one statement over arrays, or `executemany`, which psycopg pipelines), so a batch of
thousands of changes costs a few round trips, not thousands.
"""

from __future__ import annotations

import itertools
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
SELECT u.* FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::bytea[], %s::int[], %s::bool[], %s::bytea[],
    %s::float8[], %s::bigint[]) AS u(client_id, seq, topic, payload, qos, retain, properties, expires_at, size)
WHERE EXISTS (SELECT 1 FROM broker_sessions s WHERE s.client_id = u.client_id)
ON CONFLICT (client_id, seq) DO NOTHING
RETURNING client_id, size
"""
_DEQUEUE = b"""
DELETE FROM broker_queue q USING unnest(%s::text[], %s::bigint[]) AS u(client_id, seq)
WHERE q.client_id = u.client_id AND q.seq = u.seq
RETURNING q.client_id, q.size
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
"""
_LOCK_SESSIONS = b"""
SELECT 1 FROM broker_sessions WHERE client_id = ANY(%s) ORDER BY client_id FOR NO KEY UPDATE
"""
_OVER_LIMITS = _pg(sql.OVER_LIMITS.replace("client_id IN ({ids})", "client_id = ANY(?)"))
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
        async with self.db.connection() as conn, conn.transaction(), conn.cursor() as cur:
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
        for kind, group in itertools.groupby(changes, key=type):
            await self._run(kind, list(group))
        await _add_queued(self.cur, self.added.items())
        return ApplyResult(await self._trim(sorted(self.enqueued)))

    async def _run(self, kind: type, run: list[Any]) -> None:
        cur = self.cur
        if kind is PutSession:
            await cur.executemany(_pg(sql.UPSERT_SESSION), [sql.session_row(c.record) for c in run])
        elif kind is DropSession:
            gone = [c.client_id for c in run]
            await cur.execute(b"DELETE FROM broker_sessions WHERE client_id = ANY(%s)", (gone,))
            for client_id in gone:
                self.added.pop(client_id, None)
                self.enqueued.discard(client_id)
        elif kind is Subscribe:
            await cur.executemany(_pg(sql.SUBSCRIBE), [sql.subscription_row(c.client_id, c.subscription) for c in run])
        elif kind is Unsubscribe:
            await cur.executemany(_pg(sql.UNSUBSCRIBE), [(c.client_id, c.topic_filter) for c in run])
        elif kind is Enqueue:
            rows = [sql.queued_row(c.client_id, c.queued) for c in run]
            await cur.execute(_ENQUEUE, [list(column) for column in zip(*rows, strict=True)])
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
            await cur.executemany(_pg(sql.PUT_INFLIGHT), [sql.inflight_row(c.client_id, c.inflight) for c in run])
        elif kind is AckInflight:
            await cur.execute(_ACK_INFLIGHT, ([c.client_id for c in run], [c.packet_id for c in run]))
        elif kind is PutIncoming:
            await cur.executemany(_pg(sql.PUT_INCOMING), [(c.client_id, c.packet_id, c.client_id) for c in run])
        elif kind is ReleaseIncoming:
            await cur.execute(_RELEASE_INCOMING, ([c.client_id for c in run], [c.packet_id for c in run]))
        elif kind is Retain:
            await cur.executemany(_pg(sql.RETAIN), [sql.message_row(c.message) for c in run])
        elif kind is ClearRetained:
            await cur.execute(b"DELETE FROM broker_retained WHERE topic = ANY(%s)", ([c.topic for c in run],))
        else:
            raise TypeError(f"not a broker store change: {kind.__name__}")

    async def _trim(self, client_ids: list[str]) -> list[Dropped]:
        if not client_ids:
            return []
        bounds = (self.limits.max_messages, self.limits.max_bytes)
        await self.cur.execute(_OVER_LIMITS, (client_ids, *bounds))
        over = [r[0] for r in await self.cur.fetchall()]
        if not over:
            return []
        await self.cur.execute(_TRIM, (over, *bounds))
        dropped = await self.cur.fetchall()
        await _add_queued(self.cur, _negated([(client_id, size) for client_id, _, size in dropped]))
        return [Dropped(client_id, seq) for client_id, seq, _ in sorted(dropped)]


def _negated(rows: Sequence[Any]) -> list[tuple[str, list[int]]]:
    removed: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
    for client_id, size in rows:
        removed[client_id][0] -= 1
        removed[client_id][1] -= size
    return list(removed.items())


async def _add_queued(cur: psycopg.AsyncCursor[Any], deltas: Any) -> None:
    changed = sorted((client_id, n, size) for client_id, (n, size) in deltas if n or size)
    if changed:
        columns = [list(column) for column in zip(*changed, strict=True)]
        # Rows locked in one order, so batches running side by side cannot deadlock on them.
        await cur.execute(_LOCK_SESSIONS, (columns[0],))
        await cur.execute(_ADD_QUEUED, columns)
