"""The broker store on SQLite: the hub's database file, through its one writer and its readers.

A batch is one call on the writer's thread, one transaction: its statements run between
other stores' calls (ingest's group commits), never interleaved with them.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import defaultdict
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Self, assert_never

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
from kernel import SqliteDatabase, StoreError, fetch_all

# SQLite allows 32766 host parameters per statement; stay well below.
_CHUNK = 500


class SqliteBrokerStore:
    """Retained messages and persistent sessions in the hub's SQLite database."""

    def __init__(self, db: SqliteDatabase, limits: QueueLimits | None = None) -> None:
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
        with _transient():
            return await self.db.write(_apply, list(changes), self.limits)

    async def load(self, now: float) -> Snapshot:
        with _transient():
            return await self.db.read(_load, now)

    async def expire(self, now: float) -> Expired:
        with _transient():
            return await self.db.write(_expire, now)

    async def stats(self) -> StoreStats:
        with _transient():
            return await self.db.read(_stats)


@contextlib.contextmanager
def _transient() -> Iterator[None]:
    # Locked, busy, disk full, I/O error: the database's state, not the batch's fault; retry later.
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StoreError(f"SQLite: {exc}") from exc


def _apply(conn: sqlite3.Connection, changes: list[Change], limits: QueueLimits) -> ApplyResult:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = _apply_in_transaction(conn, changes, limits)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _apply_in_transaction(conn: sqlite3.Connection, changes: list[Change], limits: QueueLimits) -> ApplyResult:
    # Queue counters change by these amounts (count, bytes) at the end of the batch.
    added: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
    enqueued: set[str] = set()
    for change in changes:
        match change:
            # The changes of every message first: they are most of any batch.
            case Enqueue(client_id=client_id, queued=queued):
                row = sql.queued_row(client_id, queued)
                cur = conn.execute(_ENQUEUE, (*row, client_id))
                if cur.rowcount == 1:
                    delta = added[client_id]
                    delta[0] += 1
                    delta[1] += queued.message.size
                    enqueued.add(client_id)
            case Dequeue(client_id=client_id, seq=seq):
                gone = conn.execute(_DEQUEUE, (client_id, seq)).fetchone()
                if gone is not None:
                    delta = added[client_id]
                    delta[0] -= 1
                    delta[1] -= gone[0]
            case PutInflight(client_id=client_id, inflight=inflight):
                conn.execute(sql.PUT_INFLIGHT, sql.inflight_row(client_id, inflight))
            case AckInflight(client_id=client_id, packet_id=packet_id):
                conn.execute(sql.ACK_INFLIGHT, (client_id, packet_id))
            case PutSession(record=record):
                conn.execute(sql.UPSERT_SESSION, sql.session_row(record))
            case DropSession(client_id=client_id):
                conn.execute(sql.DROP_SESSION, (client_id,))
                added.pop(client_id, None)
                enqueued.discard(client_id)
            case Subscribe(client_id=client_id, subscription=subscription):
                conn.execute(sql.SUBSCRIBE, sql.subscription_row(client_id, subscription))
            case Unsubscribe(client_id=client_id, topic_filter=topic_filter):
                conn.execute(sql.UNSUBSCRIBE, (client_id, topic_filter))
            case PutIncoming(client_id=client_id, packet_id=packet_id):
                conn.execute(sql.PUT_INCOMING, (client_id, packet_id, client_id))
            case ReleaseIncoming(client_id=client_id, packet_id=packet_id):
                conn.execute(sql.RELEASE_INCOMING, (client_id, packet_id))
            case Retain(message=message):
                conn.execute(sql.RETAIN, sql.message_row(message))
            case ClearRetained(topic=topic):
                conn.execute(sql.CLEAR_RETAINED, (topic,))
            case _:
                assert_never(change)
    conn.executemany(sql.ADD_QUEUED, [(n, size, client_id) for client_id, (n, size) in added.items() if n or size])
    return ApplyResult(_trim(conn, sorted(enqueued), limits))


_ENQUEUE = """
INSERT OR IGNORE INTO broker_queue (client_id, seq, topic, payload, qos, retain, properties, expires_at, size)
SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM broker_sessions WHERE client_id = ?)
"""
_DEQUEUE = "DELETE FROM broker_queue WHERE client_id = ? AND seq = ? RETURNING size"


def _trim(conn: sqlite3.Connection, client_ids: list[str], limits: QueueLimits) -> list[Dropped]:
    bounds = (limits.max_messages, limits.max_bytes)
    over: list[str] = []
    for start in range(0, len(client_ids), _CHUNK):
        chunk = client_ids[start : start + _CHUNK]
        over += [r[0] for r in fetch_all(conn, sql.ids_in(sql.OVER_LIMITS, len(chunk)), (*chunk, *bounds))]
    if not over:
        return []
    dropped: list[tuple[str, int, int]] = []
    for start in range(0, len(over), _CHUNK):
        chunk = over[start : start + _CHUNK]
        dropped += fetch_all(conn, sql.ids_in(sql.TRIM, len(chunk)), (*chunk, *bounds))
    removed: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
    for client_id, _, size in dropped:
        removed[client_id][0] -= 1
        removed[client_id][1] -= size
    conn.executemany(sql.ADD_QUEUED, [(n, size, client_id) for client_id, (n, size) in removed.items()])
    return [Dropped(client_id, seq) for client_id, seq, _ in sorted(dropped)]


def _expire(conn: sqlite3.Connection, now: float) -> Expired:
    conn.execute("BEGIN IMMEDIATE")
    try:
        sessions = sorted(r[0] for r in fetch_all(conn, sql.EXPIRE_SESSIONS, (now,)))
        retained = conn.execute(sql.EXPIRE_RETAINED, (now,)).rowcount
        removed: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
        queued = fetch_all(conn, sql.EXPIRE_QUEUED, (now,))
        for client_id, size in queued:
            removed[client_id][0] -= 1
            removed[client_id][1] -= size
        conn.executemany(sql.ADD_QUEUED, [(n, size, client_id) for client_id, (n, size) in removed.items()])
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return Expired(sessions=sessions, retained=retained, queued=len(queued))


def _load(conn: sqlite3.Connection, now: float) -> Snapshot:
    # One read transaction, so the parts agree with each other.
    conn.execute("BEGIN")
    try:
        return sql.snapshot(
            conn.execute(sql.LOAD_SESSIONS, (now,)),
            conn.execute(sql.LOAD_SUBSCRIPTIONS),
            conn.execute(sql.LOAD_QUEUE, (now,)),
            conn.execute(sql.LOAD_INFLIGHT),
            conn.execute(sql.LOAD_INCOMING),
            conn.execute(sql.LOAD_RETAINED, (now,)),
            conn.execute(sql.LAST_SEQ).fetchone()[0],
        )
    finally:
        conn.execute("COMMIT")


def _stats(conn: sqlite3.Connection) -> StoreStats:
    sessions, queued, queued_bytes = conn.execute(sql.STATS_SESSIONS).fetchone()
    inflight = conn.execute(sql.COUNT_INFLIGHT).fetchone()[0]
    retained = conn.execute(sql.COUNT_RETAINED).fetchone()[0]
    return StoreStats(
        sessions=sessions, queued_messages=queued, queued_bytes=queued_bytes, inflight=inflight, retained=retained
    )
