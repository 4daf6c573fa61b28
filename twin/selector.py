"""Which vehicles something applies to: a rule, a fleet job, a history query, a schedule."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Protocol

import msgspec


class Selectable(Protocol):
    """What a selector reads of a vehicle (a `TwinState` has it)."""

    @property
    def vehicle_id(self) -> str: ...

    @property
    def fleet(self) -> str: ...

    @property
    def tags(self) -> Mapping[str, object]: ...


# dict=True: room for the cached set of ids, so `admits` costs the same for 10 ids or 100,000.
class VehicleSelector(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, dict=True):
    """The vehicles meeting every given criterion; with none given, every vehicle.

    A tag matches only when the vehicle's value is the given string. `vehicle_ids`
    alone needs no twin (history of a vehicle whose twin is gone is still history);
    `fleet` and `tags` are matched against twins.
    """

    fleet: str | None = None
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    vehicle_ids: tuple[str, ...] | None = None

    @classmethod
    def one(cls, vehicle_id: str) -> VehicleSelector:
        return cls(vehicle_ids=(vehicle_id,))

    @property
    def needs_twins(self) -> bool:
        """Whether choosing needs the vehicles' twins, not only their ids."""
        return self.fleet is not None or bool(self.tags)

    @functools.cached_property
    def _id_set(self) -> frozenset[str] | None:
        return None if self.vehicle_ids is None else frozenset(self.vehicle_ids)

    def admits(self, vehicle: Selectable) -> bool:
        ids = self._id_set
        if ids is not None and vehicle.vehicle_id not in ids:
            return False
        if self.fleet is not None and vehicle.fleet != self.fleet:
            return False
        tags = vehicle.tags
        return all(tags.get(key) == value for key, value in self.tags.items())
