"""The broker store in memory: the reference the SQL stores are held to, and fast unit tests.

A batch is applied to a copy-on-write of the sessions it touches and swapped in at the
end, so a batch that raises leaves nothing behind, as a rolled-back transaction would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self, assert_never

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
    Inflight,
    Message,
    PutIncoming,
    PutInflight,
    PutSession,
    Queued,
    QueueLimits,
    ReleaseIncoming,
    Retain,
    SessionRecord,
    Snapshot,
    StoredSession,
    StoreStats,
    Subscribe,
    Subscription,
    Unsubscribe,
)


@dataclass
class _Session:
    record: SessionRecord
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    # seq -> message, in the order queued (which need not be seq order).
    queue: dict[int, Queued] = field(default_factory=dict)
    queued_bytes: int = 0
    inflight: dict[int, Inflight] = field(default_factory=dict)
    incoming: set[int] = field(default_factory=set)

    def copy(self) -> _Session:
        # The Structs inside are frozen; only the containers need copying.
        return _Session(
            self.record,
            dict(self.subscriptions),
            dict(self.queue),
            self.queued_bytes,
            dict(self.inflight),
            set(self.incoming),
        )


class MemoryBrokerStore:
    """Retained messages and sessions in dicts; nothing survives the process."""

    def __init__(self, limits: QueueLimits | None = None) -> None:
        self.limits = limits or QueueLimits()
        self._retained: dict[str, Message] = {}
        self._sessions: dict[str, _Session] = {}
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def apply(self, changes: Sequence[Change]) -> ApplyResult:
        async with self._lock:
            retained = dict(self._retained)
            sessions = dict(self._sessions)
            copied: set[str] = set()

            def session(client_id: str) -> _Session | None:
                found = sessions.get(client_id)
                if found is None or client_id in copied:
                    return found
                copied.add(client_id)
                sessions[client_id] = mine = found.copy()
                return mine

            dropped: list[Dropped] = []
            over: set[str] = set()
            for change in changes:
                match change:
                    case PutSession(record=record):
                        existing = session(record.client_id)
                        if existing is None:
                            sessions[record.client_id] = _Session(record)
                            copied.add(record.client_id)
                        else:
                            existing.record = record
                    case DropSession(client_id=client_id):
                        sessions.pop(client_id, None)
                        copied.discard(client_id)
                        over.discard(client_id)
                    case Subscribe(client_id=client_id, subscription=sub):
                        if (s := session(client_id)) is not None:
                            s.subscriptions[sub.topic_filter] = sub
                    case Unsubscribe(client_id=client_id, topic_filter=topic_filter):
                        if (s := session(client_id)) is not None:
                            s.subscriptions.pop(topic_filter, None)
                    case Enqueue(client_id=client_id, queued=queued):
                        if (s := session(client_id)) is not None and queued.seq not in s.queue:
                            s.queue[queued.seq] = queued
                            s.queued_bytes += queued.message.size
                            over.add(client_id)
                    case Dequeue(client_id=client_id, seq=seq):
                        if (s := session(client_id)) is not None and (gone := s.queue.pop(seq, None)) is not None:
                            s.queued_bytes -= gone.message.size
                    case PutInflight(client_id=client_id, inflight=inflight):
                        if (s := session(client_id)) is not None:
                            s.inflight[inflight.packet_id] = inflight
                    case AckInflight(client_id=client_id, packet_id=packet_id):
                        if (s := session(client_id)) is not None:
                            s.inflight.pop(packet_id, None)
                    case PutIncoming(client_id=client_id, packet_id=packet_id):
                        if (s := session(client_id)) is not None:
                            s.incoming.add(packet_id)
                    case ReleaseIncoming(client_id=client_id, packet_id=packet_id):
                        if (s := session(client_id)) is not None:
                            s.incoming.discard(packet_id)
                    case Retain(message=message):
                        retained[message.topic] = message
                    case ClearRetained(topic=topic):
                        retained.pop(topic, None)
                    case _:
                        assert_never(change)
            # Bounds are checked once, after the whole batch, as the SQL stores do.
            for client_id in sorted(over):
                s = sessions[client_id]
                dropped.extend(Dropped(client_id, seq) for seq in self._trim(s))
            self._retained = retained
            self._sessions = sessions
            return ApplyResult(dropped)

    def _trim(self, s: _Session) -> list[int]:
        gone: list[int] = []
        limits = self.limits
        oldest_first = iter(sorted(s.queue))
        while len(s.queue) > 1 and (len(s.queue) > limits.max_messages or s.queued_bytes > limits.max_bytes):
            seq = next(oldest_first)
            s.queued_bytes -= s.queue.pop(seq).message.size
            gone.append(seq)
        return gone

    async def load(self, now: float) -> Snapshot:
        async with self._lock:
            sessions = []
            last_seq = 0
            for s in self._sessions.values():
                last_seq = max([last_seq, *s.queue, *(i.seq for i in s.inflight.values())])
                if _gone(s.record.expires_at, now):
                    continue
                sessions.append(
                    StoredSession(
                        record=s.record,
                        subscriptions=sorted(s.subscriptions.values(), key=lambda sub: sub.topic_filter),
                        queue=[
                            s.queue[seq] for seq in sorted(s.queue) if not _gone(s.queue[seq].message.expires_at, now)
                        ],
                        inflight=sorted(s.inflight.values(), key=lambda i: (i.seq, i.packet_id)),
                        incoming=sorted(s.incoming),
                    )
                )
            sessions.sort(key=lambda stored: stored.record.client_id)
            retained = sorted(
                (m for m in self._retained.values() if not _gone(m.expires_at, now)), key=lambda m: m.topic
            )
            return Snapshot(retained=retained, sessions=sessions, last_seq=last_seq)

    async def expire(self, now: float) -> Expired:
        async with self._lock:
            gone_sessions = sorted(c for c, s in self._sessions.items() if _gone(s.record.expires_at, now))
            for client_id in gone_sessions:
                del self._sessions[client_id]
            gone_retained = [t for t, m in self._retained.items() if _gone(m.expires_at, now)]
            for topic in gone_retained:
                del self._retained[topic]
            queued = 0
            for s in self._sessions.values():
                for seq in [seq for seq, q in s.queue.items() if _gone(q.message.expires_at, now)]:
                    s.queued_bytes -= s.queue.pop(seq).message.size
                    queued += 1
            return Expired(sessions=gone_sessions, retained=len(gone_retained), queued=queued)

    async def stats(self) -> StoreStats:
        async with self._lock:
            sessions = self._sessions.values()
            return StoreStats(
                sessions=len(self._sessions),
                queued_messages=sum(len(s.queue) for s in sessions),
                queued_bytes=sum(s.queued_bytes for s in sessions),
                inflight=sum(len(s.inflight) for s in sessions),
                retained=len(self._retained),
            )


def _gone(expires_at: float | None, now: float) -> bool:
    return expires_at is not None and expires_at <= now
