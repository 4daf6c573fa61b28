"""Which partition a vehicle belongs to, the same in Python and in SQL (the fence triggers)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Protocol


def partition_of(vehicle_id: str, partitions: int) -> int:
    """The first 32 bits of the id's MD5, modulo the partition count.

    MD5 because PostgreSQL computes it natively: `PARTITION_SQL` gives the same number.
    """
    digest = hashlib.md5(vehicle_id.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big") % partitions


# The same as `partition_of`, in SQL, over a text expression `{vid}` and an integer `{k}`.
PARTITION_SQL = "mod(('x' || substr(md5({vid}), 1, 8))::bit(32)::bigint, {k})::int"


class Ownership:
    """The partitions this worker holds, with their fencing tokens; asked on every message."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.tokens: dict[int, int] = {}

    def owns_partition(self, partition: int) -> bool:
        return partition in self.tokens

    def owns(self, vehicle_id: str) -> bool:
        return partition_of(vehicle_id, self.partitions) in self.tokens

    def selects(self, partitions: set[int]) -> VehicleSelector:
        return VehicleSelector(partitions, self.partitions)


class VehicleSelector:
    """A predicate over vehicle ids: those in `partitions`."""

    def __init__(self, partitions: set[int], count: int) -> None:
        self.partitions = frozenset(partitions)
        self.count = count

    def __call__(self, vehicle_id: str) -> bool:
        return partition_of(vehicle_id, self.count) in self.partitions


class PartitionListener(Protocol):
    """A part of the hub that keeps state per vehicle and follows the partitions a worker holds."""

    async def adopt(self, vehicle: Callable[[str], bool]) -> None:
        """Rebuild the vehicles `vehicle` selects from the database: their partition was gained."""
        ...

    def release(self, vehicle: Callable[[str], bool]) -> None:
        """Let go of the vehicles `vehicle` selects: their partition moved to another worker."""
        ...
