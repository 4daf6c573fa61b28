"""Partition leases in PostgreSQL: renew, rebalance, take over, give back.

Each worker runs `Leases.step` every heartbeat, in one transaction: it marks itself
alive, renews the leases it holds (those whose token is still its own), counts the live
workers, and moves towards its fair share, ceil(partitions / live workers): it gives
back the partitions above it and takes free or expired ones below it. Taking a
partition adds one to its token, which fences off the previous holder (cluster/schema.py).

A worker killed with -9 stops renewing; its leases expire after `lease_s` and the others
take them at their next heartbeat, so partitions move within lease_s + heartbeat_s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import msgspec

from kernel import PostgresDatabase

_encode = msgspec.json.Encoder().encode


def _json(value: object) -> str:
    return _encode(value).decode()


_ALIVE = """
INSERT INTO cluster_workers (worker, role, started_at, seen_at) VALUES (%s, %s, now(), now())
ON CONFLICT (worker) DO UPDATE SET seen_at = now(), role = excluded.role
"""
_LIVE = "SELECT count(*) FROM cluster_workers WHERE role = 'worker' AND seen_at > now() - make_interval(secs => %s)"
# Renewed only while the token is still ours: nobody took the partition in between.
_RENEW = """
UPDATE cluster_leases SET expires_at = now() + make_interval(secs => %s)
WHERE owner = %s AND (part, token) IN (SELECT * FROM unnest(%s::int[], %s::bigint[]))
RETURNING part, token
"""
_TAKE = """
UPDATE cluster_leases SET owner = %s, token = token + 1, expires_at = now() + make_interval(secs => %s)
WHERE part IN (
    SELECT part FROM cluster_leases WHERE owner IS NULL OR expires_at <= now()
    ORDER BY part LIMIT %s FOR UPDATE SKIP LOCKED
)
RETURNING part, token
"""
_GIVE_BACK = """
UPDATE cluster_leases SET owner = NULL, expires_at = '-infinity'
WHERE owner = %s AND (part, token) IN (SELECT * FROM unnest(%s::int[], %s::bigint[]))
"""
_LEAVE = "DELETE FROM cluster_workers WHERE worker = %s"
# One DELETE decides who reaps a dead worker: the row goes to exactly one caller.
_REAP = (
    "DELETE FROM cluster_workers WHERE role = 'worker' AND seen_at < now() - make_interval(secs => %s) "
    "AND worker <> %s RETURNING worker"
)


@dataclass(frozen=True, slots=True)
class LeaseChange:
    """What one step changed: partitions (with their new tokens) gained, and partitions lost or given back."""

    held: dict[int, int]
    gained: dict[int, int] = field(default_factory=dict)
    lost: frozenset[int] = frozenset()


class Leases:
    """One worker's side of the lease table."""

    def __init__(self, db: PostgresDatabase, worker: str, *, partitions: int, lease_s: float, role: str = "worker"):
        self.db = db
        self.worker = worker
        self.partitions = partitions
        self.lease_s = lease_s
        self.role = role

    async def step(self, held: dict[int, int]) -> LeaseChange:
        """Stay alive, renew `held` (partition -> token) and move towards the fair share."""
        parts, tokens = list(held), [held[p] for p in held]
        async with self.db.connection() as conn, conn.transaction():
            await conn.execute(_ALIVE, (self.worker, self.role))
            if self.role != "worker":
                return LeaseChange({})
            cur = await conn.execute(_RENEW, (self.lease_s, self.worker, parts, tokens))
            renewed = {int(p): int(t) for p, t in await cur.fetchall()}
            cur = await conn.execute(_LIVE, (self.lease_s,))
            row = await cur.fetchone()
            live = max(1, int(row[0]) if row else 1)
            fair = math.ceil(self.partitions / live)
            given: set[int] = set()
            if len(renewed) > fair:
                # The highest partitions go back, so every worker gives back the same way.
                extra = sorted(renewed)[fair:]
                await conn.execute(_GIVE_BACK, (self.worker, extra, [renewed[p] for p in extra]))
                given = set(extra)
                for p in extra:
                    del renewed[p]
            gained: dict[int, int] = {}
            if len(renewed) < fair:
                cur = await conn.execute(_TAKE, (self.worker, self.lease_s, fair - len(renewed)))
                gained = {int(p): int(t) for p, t in await cur.fetchall()}
        lost = (set(held) - set(renewed)) | given
        return LeaseChange({**renewed, **gained}, gained, frozenset(lost))

    async def reap(self, after_s: float) -> list[str]:
        """Workers silent for `after_s`, removed from the table: the caller (alone) cleans up after them."""
        async with self.db.connection() as conn:
            cur = await conn.execute(_REAP, (after_s, self.worker))
            return [str(r[0]) for r in await cur.fetchall()]

    async def leave(self, held: dict[int, int]) -> None:
        """Give every lease back and leave: the others take the partitions at their next heartbeat."""
        parts = list(held)
        async with self.db.connection() as conn, conn.transaction():
            await conn.execute(_GIVE_BACK, (self.worker, parts, [held[p] for p in parts]))
            await conn.execute(_LEAVE, (self.worker,))


def fence_of(worker: str, partitions: int, held: dict[int, int]) -> str:
    """The `fleethub.fence` value for a worker holding `held` (see cluster/schema.py)."""
    return _json({"w": worker, "k": partitions, "t": {str(p): t for p, t in sorted(held.items())}})
