"""Backtests: replay one vehicle's stored history through one rule, by device time.

The replay starts from an empty twin with the vehicle's current fleet and tags,
applies each history row as the twin service would, and runs the engine's own core
(`Evaluator`) with the clock set to each row's device time, firing `for` windows and
clock re-checks at their deadlines between rows. Nothing is stored or published.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from kernel import isoformat
from rules.alerts import AlertEventKind
from rules.definitions import CompiledRule
from rules.evaluator import Evaluator
from rules.zones import Zone
from twin import HistoryRow, TwinState, TwinUpdate, UpdateKind, apply_reported, flatten

# Deadlines fired between two rows at most, so a periodic re-check over a long gap stays bounded.
MAX_FIRINGS = 100_000


class BacktestEvent(msgspec.Struct):
    """An alert the rule would have raised, or cleared, and when (device time)."""

    event: str
    alert_id: str
    at: str | None
    ts: float
    message: str
    values: dict[str, object]


class BacktestResult(msgspec.Struct):
    rule: str
    vehicle_id: str
    start: str | None
    end: str | None
    rows: int
    # More rows than the backtest may read were in the range; the replay stopped early.
    truncated: bool
    events: list[BacktestEvent]


class Replay:
    """One rule over one vehicle's rows, fed in device-time order."""

    def __init__(
        self,
        rule: CompiledRule,
        zones: Mapping[str, Zone],
        *,
        vehicle_id: str,
        fleet: str = "default",
        tags: Mapping[str, object] | None = None,
        recheck_s: float = 10.0,
    ) -> None:
        self.core = Evaluator(recheck_s=recheck_s)
        self.core.zones = zones
        self.core.put_rule(rule, 0.0)
        self.state = TwinState(vehicle_id, 0.0, 0.0, fleet=fleet, tags=dict(tags or {}))
        self.events: list[BacktestEvent] = []
        self.rows = 0

    def feed(self, rows: Iterable[HistoryRow]) -> None:
        for row in rows:
            self.advance(row.ts)
            self.rows += 1
            self.state.updated_at = row.ts
            change = apply_reported(self.state, flatten(row.data), row.ts)
            if change.applied:
                update = TwinUpdate(
                    UpdateKind.TELEMETRY,
                    self.state.vehicle_id,
                    self.state,
                    row.ts,
                    tuple(change.changed),
                    change.previous,
                )
                self.core.observe([update], row.ts)
            self._collect()

    def advance(self, to: float) -> None:
        """Fire every deadline up to `to`, each at its own time."""
        for _ in range(MAX_FIRINGS):
            deadline = self.core.next_deadline()
            if deadline is None or deadline > to:
                return
            for at, timer in self.core.pop_due(deadline):
                self.core.fire(timer, self.state, at)
            self._collect()

    def _collect(self) -> None:
        for alert, kind in self.core.take_effects().events:
            cleared = kind is AlertEventKind.CLEARED
            at = alert.cleared_at if cleared else alert.raised_at
            self.events.append(
                BacktestEvent(
                    event=kind.value,
                    alert_id=alert.id,
                    at=isoformat(at),
                    ts=at or 0.0,
                    message=alert.message,
                    values=alert.clear_values
                    if kind is AlertEventKind.CLEARED and alert.clear_values
                    else alert.values,
                )
            )
