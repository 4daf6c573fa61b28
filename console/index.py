"""The fleet index: one `VehicleRow` per vehicle, kept current from the hub's events.

It answers the console's bulk endpoint from memory (20,000 vehicles in one response
without touching the store) and tells the live feed which rows changed. It is filled
once from the store at start, then updated from twin updates and alert events; a
row written by an event before the initial load reached it is newer and is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol

import structlog

from console.rows import Columns, VehicleRow, row_of
from twin import TwinFilter, TwinState

log = structlog.get_logger(__name__)

_PAGE = 1000
_OPEN = ("active", "acknowledged")


class TwinSource(Protocol):
    async def states(self, query: TwinFilter) -> list[TwinState]: ...


class OpenAlerts(Protocol):
    """Open alerts at start-up, as (alert id, vehicle id, severity)."""

    async def __call__(self) -> list[tuple[str, str, str]]: ...


class FleetIndex:
    def __init__(self) -> None:
        self.rows: dict[str, VehicleRow] = {}
        # Open alerts per vehicle (alert id -> severity), shared with the vehicle's row; kept apart
        # so an alert of a vehicle whose row is not built yet is not lost.
        self.alerts: dict[str, dict[str, str]] = {}
        self.ready = asyncio.Event()
        # Alerts seen in events before the initial load, so the load does not resurrect them.
        self._alerts_seen: set[str] = set()

    async def load(self, twins: TwinSource, open_alerts: OpenAlerts | None) -> None:
        """Fill the index from the store; rows already written by events are newer and stay."""
        loaded = 0
        async for state in _all_states(twins):
            if state.vehicle_id not in self.rows:
                self.rows[state.vehicle_id] = row_of(state, self.alerts.setdefault(state.vehicle_id, {}))
            loaded += 1
        if open_alerts is not None:
            for alert_id, vehicle_id, severity in await open_alerts():
                if alert_id not in self._alerts_seen:
                    self.alerts.setdefault(vehicle_id, {})[alert_id] = severity
        self._alerts_seen.clear()
        self.ready.set()
        log.info("console fleet index loaded", vehicles=loaded)

    def update(self, state: TwinState) -> tuple[VehicleRow, VehicleRow | None]:
        """Rebuild the vehicle's row; returns it and the row it replaced."""
        previous = self.rows.get(state.vehicle_id)
        row = row_of(state, self.alerts.setdefault(state.vehicle_id, {}))
        self.rows[state.vehicle_id] = row
        return row, previous

    def alert(self, event: dict[str, Any]) -> VehicleRow | None:
        """Apply an alert event; the vehicle's row when its open alerts changed."""
        alert_id, vehicle_id = event.get("id"), event.get("vehicle_id")
        if not isinstance(alert_id, str) or not isinstance(vehicle_id, str):
            return None
        if not self.ready.is_set():
            self._alerts_seen.add(alert_id)
        open_ = self.alerts.setdefault(vehicle_id, {})
        if event.get("state") in _OPEN:
            open_[alert_id] = str(event.get("severity", "info"))
        elif open_.pop(alert_id, None) is None:
            return None
        return self.rows.get(vehicle_id)

    def replace_alerts(self, open_alerts: Iterable[tuple[str, str, str]]) -> set[str]:
        """Make the open alerts exactly these (alert id, vehicle id, severity); the vehicles whose set changed.

        For when alert events may have been missed. Each vehicle's dict is changed in place:
        its row holds the same dict.
        """
        wanted: dict[str, dict[str, str]] = {}
        for alert_id, vehicle_id, severity in open_alerts:
            wanted.setdefault(vehicle_id, {})[alert_id] = severity
        changed: set[str] = set()
        for vehicle_id in set(self.alerts) | set(wanted):
            now = self.alerts.setdefault(vehicle_id, {})
            new = wanted.get(vehicle_id, {})
            if now != new:
                now.clear()
                now.update(new)
                changed.add(vehicle_id)
        return changed

    def remove(self, vehicle_id: str) -> VehicleRow | None:
        """Forget a vehicle whose twin was deleted; its row, if it had one."""
        self.alerts.pop(vehicle_id, None)
        return self.rows.pop(vehicle_id, None)

    def fleet_of(self, vehicle_id: str) -> str | None:
        row = self.rows.get(vehicle_id)
        return None if row is None else row.fleet

    def columns(self, fleets: frozenset[str] | None) -> Columns:
        """Every row of these fleets (None: every fleet), ordered by vehicle id."""
        return columns_of(sorted(self.rows.values(), key=lambda r: r.vehicle_id), fleets)


def columns_of(rows: Iterable[VehicleRow], fleets: frozenset[str] | None) -> Columns:
    out = Columns()
    for row in rows:
        if fleets is None or row.fleet in fleets:
            out.add(row)
    return out


async def _all_states(twins: TwinSource) -> AsyncIterator[TwinState]:
    after: str | None = None
    while True:
        page = await twins.states(TwinFilter(after=after, limit=_PAGE))
        for state in page:
            yield state
        if len(page) < _PAGE:
            return
        after = page[-1].vehicle_id
