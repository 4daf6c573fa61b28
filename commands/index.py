"""The command service's memory: which commands wait, for which vehicle and job, and until when.

Everything here mirrors the store (open commands are loaded at start-up) plus what
only a running hub knows: which vehicles are online and which must get a delivery
pass. Pure bookkeeping, no I/O.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator

from commands.model import Command


class OpenCommands:
    def __init__(self) -> None:
        # Open (queued or sent) commands per vehicle, in creation order.
        self._by_vehicle: dict[str, dict[str, Command]] = {}
        self._by_id: dict[str, Command] = {}
        self._by_job: Counter[str] = Counter()
        # (expires_at, command id, vehicle id); finished commands are skipped when popped.
        self._expiries: list[tuple[float, str, str]] = []
        self.online: set[str] = set()
        # Vehicles to deliver to at the next pass; True also resends what was sent.
        self.due: dict[str, bool] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, command: Command) -> None:
        self._by_vehicle.setdefault(command.vehicle_id, {})[command.id] = command
        self._by_id[command.id] = command
        heapq.heappush(self._expiries, (command.expires_at, command.id, command.vehicle_id))
        if command.job_id is not None:
            self._by_job[command.job_id] += 1

    def remove(self, command: Command) -> bool:
        """Forget a finished command; True when it was held."""
        commands = self._by_vehicle.get(command.vehicle_id)
        if commands is None or commands.pop(command.id, None) is None:
            return False
        if not commands:
            del self._by_vehicle[command.vehicle_id]
        del self._by_id[command.id]
        if command.job_id is not None:
            self._by_job[command.job_id] -= 1
            if self._by_job[command.job_id] <= 0:
                del self._by_job[command.job_id]
        return True

    def get(self, vehicle_id: str, command_id: str) -> Command | None:
        return self._by_vehicle.get(vehicle_id, {}).get(command_id)

    def find(self, command_id: str) -> Command | None:
        """A command by id alone (the API's GET does not trust the vehicle in the path)."""
        return self._by_id.get(command_id)

    def vehicles(self) -> list[str]:
        """Vehicles with an open command."""
        return list(self._by_vehicle)

    def of_vehicle(self, vehicle_id: str) -> list[Command]:
        return list(self._by_vehicle.get(vehicle_id, {}).values())

    def of_job(self, job_id: str) -> list[Command]:
        if not self._by_job[job_id]:
            return []
        return [c for c in self._by_id.values() if c.job_id == job_id]

    def waiting_for_job(self, job_id: str) -> int:
        return self._by_job[job_id]

    def expired(self, now: float) -> Iterator[Command]:
        """Open commands whose TTL ended at or before `now`, each once."""
        while self._expiries and self._expiries[0][0] <= now:
            _, command_id, vehicle_id = heapq.heappop(self._expiries)
            command = self.get(vehicle_id, command_id)
            if command is not None and command.open:
                yield command

    def online_with_commands(self) -> list[str]:
        """Online vehicles that have something waiting: the only ones a pass visits."""
        smaller = self.online if len(self.online) < len(self._by_vehicle) else self._by_vehicle.keys()
        return [v for v in smaller if v in self._by_vehicle and v in self.online]
