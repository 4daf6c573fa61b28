"""Which partition a vehicle belongs to, the same in Python and in PostgreSQL.

Hub workers split the fleet into partitions by a hash of the vehicle id (cluster/).
The stores below them read "the vehicles of these partitions" when a worker takes
partitions over; `VehiclePartitions` says it both as a predicate and as SQL. An owner
that rebuilds the few vehicles another node changed reads them by id (`VehicleIds`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from kernel.sql import SQLITE, Dialect


def partition_of(vehicle_id: str, partitions: int) -> int:
    """The first 32 bits of the id's MD5, modulo the partition count.

    MD5 because PostgreSQL computes it natively: `PARTITION_SQL` gives the same number.
    """
    digest = hashlib.md5(vehicle_id.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big") % partitions


# The same as `partition_of`, in SQL, over a text expression `{vid}` and an integer `{k}`.
PARTITION_SQL = "mod(('x' || substr(md5({vid}), 1, 8))::bit(32)::bigint, {k})::int"


class VehiclePartitions(msgspec.Struct, frozen=True, tag=True):
    """The vehicles whose partition (of `count`) is one of `parts`: a predicate over vehicle ids."""

    parts: frozenset[int]
    count: int

    def __call__(self, vehicle_id: str) -> bool:
        return partition_of(vehicle_id, self.count) in self.parts

    def where(self, column: str) -> tuple[str, list[int]]:
        """A PostgreSQL condition with one `?` placeholder, and its argument: `column` names such a vehicle."""
        return f"{PARTITION_SQL.format(vid=column, k=self.count)} = ANY(?::int[])", sorted(self.parts)


class VehicleIds(msgspec.Struct, frozen=True, tag=True):
    """These vehicles, by id: a predicate over vehicle ids."""

    ids: frozenset[str]

    def __call__(self, vehicle_id: str) -> bool:
        return vehicle_id in self.ids


# What a store read can be narrowed to: a worker's partitions, or a few vehicles by id (tagged, so
# a Struct holding one stays decodable).
VehicleSet = VehiclePartitions | VehicleIds


def vehicles_where(vehicles: VehicleSet, column: str, dialect: Dialect) -> tuple[str, Any] | None:
    """A condition with one `?` placeholder choosing `vehicles` by `column`, and its argument.

    None for partitions on SQLite, which has no md5: the caller filters in Python then
    (worker mode runs on PostgreSQL). Ids go as one parameter (an array, or JSON text on
    SQLite) however many there are, so no placeholder limit applies.
    """
    if isinstance(vehicles, VehicleIds):
        ids = sorted(vehicles.ids)
        if dialect is SQLITE:
            return f"{column} IN (SELECT value FROM json_each(?))", msgspec.json.encode(ids).decode()
        return f"{column} = ANY(?::text[])", ids
    if dialect is SQLITE:
        return None
    condition, parts = vehicles.where(column)
    return condition, parts
