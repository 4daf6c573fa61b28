"""Messages a worker received for a partition another worker owns, kept in PostgreSQL for the owner.

With a broker that cannot route by vehicle (Mosquitto), a shared subscription hands a
message to any worker. One that does not own the vehicle's partition writes the message
here and only then acknowledges it to the broker; the owner takes the partition's rows
in order, runs them through its ingest pipeline and deletes them once committed. A
worker that dies before deleting leaves them for the next owner, who applies them again:
history rows are keyed by (vehicle, device time, seq) and twin keys by their timestamps,
so a second application changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from kernel import PostgresDatabase
from twin import Inbound, MessageKind

_encode = msgspec.json.Encoder().encode
_extra = msgspec.json.Decoder(dict[str, str])

_PUT = (
    "INSERT INTO cluster_inbox (part, vehicle_id, kind, subtopic, payload, received_at, extra) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
_TAKE = (
    "SELECT id, vehicle_id, kind, subtopic, payload, received_at, extra FROM cluster_inbox "
    "WHERE part = ANY(%s::int[]) ORDER BY id LIMIT %s"
)
_DONE = "DELETE FROM cluster_inbox WHERE id = ANY(%s::bigint[])"
_KINDS = {k.value: k for k in MessageKind}


@dataclass(frozen=True, slots=True)
class Forwarded:
    """One message from the inbox, with its row id."""

    id: int
    item: Inbound


class Inbox:
    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    async def put(self, items: Sequence[tuple[int, Inbound]]) -> None:
        """Store (partition, message) pairs in one transaction."""
        rows = [
            (p, i.vehicle_id, i.kind.value, i.subtopic, i.payload, i.received_at, _encode(i.extra).decode())
            for p, i in items
        ]
        async with self.db.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(_PUT, rows)

    async def take(self, partitions: Sequence[int], limit: int) -> list[Forwarded]:
        """The oldest waiting messages of `partitions` (they stay until `done`)."""
        async with self.db.connection() as conn:
            cur = await conn.execute(_TAKE, (list(partitions), limit))
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
