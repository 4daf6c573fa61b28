"""Messages a worker received for a partition another worker owns, kept in PostgreSQL for the owner.

With a broker that cannot route by vehicle (Mosquitto), a shared subscription hands a
message to any worker. One that does not own the vehicle's partition writes the message
here and only then acknowledges it to the broker; the owner takes the partition's rows
in order, runs them through its ingest pipeline and deletes them once committed. A
worker that dies before deleting leaves them for the next owner, who applies them again:
history rows are keyed by (vehicle, device time, seq) and twin keys by their timestamps,
so a second application changes nothing.

A write is one COPY and one NOTIFY on `INBOX_CHANNEL` naming the partitions written, in
one transaction, so an owner wakes when rows are there to take rather than on its next
poll. An owner deletes what its pipeline committed in the same statement that takes the
next rows (`take`), which saves a round trip per pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec

from kernel import PostgresDatabase, copy_text
from twin import Inbound, MessageKind

_encode = msgspec.json.Encoder().encode
_extra = msgspec.json.Decoder(dict[str, str])

# Owners LISTEN here; the payload is the partitions written, space-separated.
INBOX_CHANNEL = "fleethub_inbox"

_PUT = "COPY cluster_inbox (part, vehicle_id, kind, subtopic, payload, received_at, extra) FROM STDIN"
_NOTIFY = "SELECT pg_notify(%s, %s)"
# The SELECT sees the table as it was before the DELETE of the same statement, hence the exclusion.
_TAKE = """
WITH done AS (DELETE FROM cluster_inbox WHERE id = ANY(%(done)s::bigint[]))
SELECT id, vehicle_id, kind, subtopic, payload, received_at, extra FROM cluster_inbox
WHERE part = ANY(%(parts)s::int[]) AND id <> ALL(%(skip)s::bigint[]) ORDER BY id LIMIT %(limit)s
"""
_DONE = "DELETE FROM cluster_inbox WHERE id = ANY(%s::bigint[])"
_KINDS = {k.value: k for k in MessageKind}


@dataclass(frozen=True, slots=True)
class Forwarded:
    """One message from the inbox, with its row id."""

    id: int
    item: Inbound


def copy_rows(items: Sequence[tuple[int, Inbound]]) -> bytes:
    """The COPY text of (partition, message) pairs; bytea travels as hex (its backslash doubled)."""
    return "".join(
        f"{p}\t{copy_text(i.vehicle_id)}\t{i.kind.value}\t{copy_text(i.subtopic)}\t\\\\x{i.payload.hex()}\t"
        f"{i.received_at!r}\t{copy_text(_encode(i.extra).decode())}\n"
        for p, i in items
    ).encode()


class Inbox:
    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    async def put(self, items: Sequence[tuple[int, Inbound]]) -> None:
        """Store (partition, message) pairs in one transaction, in this order, and wake their owners."""
        if not items:
            return
        parts = " ".join(str(p) for p in sorted({p for p, _ in items}))
        async with self.db.connection() as conn, conn.transaction(), conn.cursor() as cur:
            async with cur.copy(_PUT) as copy:
                await copy.write(copy_rows(items))
            await cur.execute(_NOTIFY, (INBOX_CHANNEL, parts))

    async def take(
        self, partitions: Sequence[int], limit: int, done: Sequence[int] = (), busy: Iterable[int] = ()
    ) -> list[Forwarded]:
        """Delete the rows `done` names; the oldest waiting messages of `partitions` but those `busy` names.

        Taken rows stay until done: `busy` are rows taken before whose outcome is not known yet.
        """
        skip = [*done, *busy]
        async with self.db.connection() as conn:
            args = {"done": list(done), "skip": skip, "parts": list(partitions), "limit": limit}
            cur = await conn.execute(_TAKE, args)
            rows = await cur.fetchall()
        return [
            Forwarded(
                int(r[0]),
                Inbound(
                    vehicle_id=r[1],
                    kind=_KINDS[r[2]],
                    payload=bytes(r[4]),
                    received_at=float(r[5]),
                    qos=1,
                    subtopic=r[3],
                    extra=_extra.decode(r[6]),
                ),
            )
            for r in rows
        ]

    async def done(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        async with self.db.connection() as conn:
            await conn.execute(_DONE, (list(ids),))

    async def waiting(self) -> int:
        async with self.db.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM cluster_inbox")
            row = await cur.fetchone()
        return int(row[0]) if row else 0
