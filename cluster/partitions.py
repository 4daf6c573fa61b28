"""Which partitions this worker holds; which partition a vehicle belongs to is `kernel.partitions`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from kernel import PARTITION_SQL, VehiclePartitions, partition_of

__all__ = ["PARTITION_SQL", "Ownership", "PartitionListener", "partition_of"]


class Ownership:
    """The partitions this worker holds, with their fencing tokens; asked on every message."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.tokens: dict[int, int] = {}

    def owns_partition(self, partition: int) -> bool:
        return partition in self.tokens

    def owns(self, vehicle_id: str) -> bool:
        return partition_of(vehicle_id, self.partitions) in self.tokens

    def selects(self, partitions: set[int]) -> VehiclePartitions:
        return VehiclePartitions(frozenset(partitions), self.partitions)


class PartitionListener(Protocol):
    """A part of the hub that keeps state per vehicle and follows the partitions a worker holds."""

    async def adopt(self, vehicle: Callable[[str], bool]) -> None:
        """Rebuild the vehicles `vehicle` selects from the database: their partition was gained."""
        ...

    def release(self, vehicle: Callable[[str], bool]) -> None:
        """Let go of the vehicles `vehicle` selects: their partition moved to another worker."""
        ...
