"""The rules engine: a `TwinObserver` that raises and clears alerts, persists and publishes them.

Evaluation is synchronous inside `twin_updated` (compiled closures over in-memory
twins; see `bench/rules_eval.py` for its cost) and only produces effects in memory.
The engine's own tasks do the rest: one sleeps until the next deadline in the timer
heap and fires it; one persists effects to the `RulesStore` and then publishes each
transition with QoS 1 on `alerts/{fleet}/{severity}/{rule}/{vid}`. The ingest
consumer never waits for either.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

import msgspec
import structlog

from kernel import NotFound, VehicleIds, VehiclePartitions, VehicleSet, is_fenced, isoformat
from rules.alerts import Alert, AlertEventKind, AlertQuery, AlertState, alert_topic, event_payload
from rules.backtest import BacktestResult, Replay
from rules.compiler import Compiler
from rules.definitions import CompiledRule, CompileProblem, RuleDefinition, RuleInvalid, compile_definition
from rules.errors import RuleConfigError, RuleError, quote
from rules.evaluator import AlertNotOpen, Evaluator
from rules.stores.protocol import RulesStore, RulesWrite
from rules.zones import Zone, ZoneSet
from security import Actor, AuditEntry, audit_entry
from twin import HistoryPage, PointQuery, TwinFilter, TwinState, TwinUpdate, VehicleSelector

log = structlog.get_logger(__name__)

_PAGE = 500


class Publisher(Protocol):
    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None: ...


class TwinSource(Protocol):
    """What the engine reads from the twin store: twins at start-up and on timers, history for backtests."""

    async def load_twin(self, vehicle_id: str) -> TwinState | None: ...

    async def list_twins(self, query: TwinFilter) -> list[TwinState]: ...

    async def history_page(self, query: PointQuery) -> HistoryPage: ...


@dataclass(frozen=True, slots=True)
class EngineOptions:
    # Seconds between re-checks of a clock-reading rule whose thresholds cannot be derived.
    recheck_s: float = 10.0
    # History rows one backtest reads at most.
    backtest_max_rows: int = 100_000
    # Rules the engine holds at most.
    max_rules: int = 1000
    # Longest pause between retries of a failed store write.
    write_retry_max_s: float = 5.0


class TooManyRules(RuleError):
    pass


class RulesEngine:
    """See the module docstring. Use as an async context manager; register as a twin observer."""

    def __init__(
        self,
        store: RulesStore,
        twins: TwinSource,
        *,
        publisher: Publisher | None = None,
        compiler: Compiler | None = None,
        options: EngineOptions | None = None,
        clock: Callable[[], float] = time.time,
        file_rules: Sequence[RuleDefinition] = (),
        file_zones: Mapping[str, Zone] | None = None,
    ) -> None:
        self.store = store
        self.twins = twins
        self.publisher = publisher
        self.compiler = compiler or Compiler()
        self.options = options or EngineOptions()
        self.clock = clock
        self.core = Evaluator(recheck_s=self.options.recheck_s)
        self._file_rules = list(file_rules)
        self._file_zones = dict(file_zones or {})
        self._definitions: dict[str, RuleDefinition] = {}
        self._zones: dict[str, Zone] = {}
        self._early: list[TwinUpdate] = []
        self._started = False
        self._stopped = False
        self._flush_lock = asyncio.Lock()
        self._flushing: asyncio.Future[None] | None = None
        # Audit entries of operator changes to alerts, written by the next flush with those changes.
        self._audit: list[AuditEntry] = []
        self._dirty = asyncio.Event()
        self._timer_wake = asyncio.Event()
        self._armed_for: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.published = 0
        self.publish_failures = 0
        # Rule names other parts of the hub raise alerts under (`raise_alert`); no rule may take one.
        self.reserved_prefixes: list[str] = []
        # Set by a hub worker (cluster/): rules run only for the vehicles it owns. None: all of them.
        self.owns: Callable[[str], bool] | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Load zones and rules (file first), restore alerts and windows, seed clock re-checks."""
        now = self.clock()
        for name, zone in self._file_zones.items():
            await self.store.put_zone(name, zone)
        self._zones = await self.store.list_zones()
        self.core.zones = ZoneSet(self._zones)
        for definition in self._file_rules:
            try:
                compile_definition(definition, self.compiler, zones=self._zones)
            except RuleInvalid as exc:
                raise RuleConfigError(_describe(exc)) from None
            await self.store.put_rule(definition)
        for definition in await self.store.list_rules():
            try:
                compiled = compile_definition(definition, self.compiler)
            except RuleInvalid as exc:
                log.error("stored rule does not compile; skipped", rule=definition.name, error=_describe(exc))
                continue
            self._definitions[definition.name] = definition
            self.core.put_rule(compiled, now)
        await self._restore(self._mine, now)
        self._started = True
        early, self._early = self._early, []
        if early:
            self.core.observe(early, self.clock())
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._timer_loop(), name="rules-timers"),
            loop.create_task(self._writer_loop(), name="rules-writer"),
        ]
        await self.flush()
        log.info(
            "rules engine started",
            rules=len(self._definitions),
            zones=len(self._zones),
            open_alerts=len(await self.store.open_alerts()),
        )

    def _mine(self, vehicle_id: str) -> bool:
        return self.owns is None or self.owns(vehicle_id)

    async def _restore(self, vehicle: Callable[[str], bool], now: float) -> None:
        """Take back the open alerts, windows and clock re-checks of the vehicles `vehicle` selects."""
        # A worker's partitions, or the vehicles another node changed, are chosen by the store
        # (in SQL), not by reading every vehicle's rows.
        chosen = vehicle if isinstance(vehicle, VehiclePartitions | VehicleIds) else None
        cooldown = max((r.cooldown_s for r in self.core.rules.values()), default=0.0)
        cleared = await self.store.last_cleared(now - cooldown, chosen) if cooldown > 0 else []
        self.core.restore(
            [a for a in await self.store.open_alerts(chosen) if vehicle(a.vehicle_id)],
            [t for t in await self.store.pending_timers(chosen) if vehicle(t.vehicle_id)],
            [a for a in cleared if vehicle(a.vehicle_id)],
        )
        timed = [name for name, rule in self.core.rules.items() if rule.uses_time and rule.definition.enabled]
        if timed:
            async for state in self._all_twins(chosen):
                if vehicle(state.vehicle_id):
                    self.core.check_twin(state, self.clock(), names=timed)

    async def adopt(self, vehicle: Callable[[str], bool]) -> None:
        """Take over the vehicles `vehicle` selects (a hub worker gained their partition).

        What memory held about them is dropped and rebuilt from the store, which the
        previous owner's last fenced write left as the truth: open alerts, pending
        `for`/`clear_for` windows, cooldowns and the clock re-checks of `no_data_for`.
        """
        self.core.forget(vehicle)
        await self._restore(vehicle, self.clock())
        self._changed()

    def release(self, vehicle: Callable[[str], bool]) -> None:
        """Stop running rules for the vehicles `vehicle` selects (their partition moved away)."""
        self.core.forget(vehicle)
        self._changed()

    async def stop(self) -> None:
        """Stop the timers, then persist and publish what is left."""
        self._started = False
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._flushing is not None:
            await self._flushing
            self._flushing = None
        await self.flush()

    # -- the observer -------------------------------------------------------------------

    def twin_updated(self, updates: list[TwinUpdate]) -> None:
        """Evaluate the affected rules now; persistence and publishing happen in the engine's tasks."""
        if not self._started:
            # Updates committed while the engine loads are evaluated once it has; after it
            # stopped (the hub drains ingest last) there is nobody left to publish.
            if not self._stopped:
                self._early.extend(updates)
            return
        if self.owns is not None:
            updates = [u for u in updates if self.owns(u.vehicle_id)]
        self.core.observe(updates, self.clock())
        self._changed()

    def _changed(self) -> None:
        if self.core.has_effects:
            self._dirty.set()
        deadline = self.core.next_deadline()
        if deadline is not None and (self._armed_for is None or deadline < self._armed_for):
            self._timer_wake.set()

    async def _timer_loop(self) -> None:
        while True:
            deadline = self.core.next_deadline()
            self._armed_for = deadline
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._timer_wake.wait()
            self._timer_wake.clear()
            try:
                await self.run_due()
            except Exception:
                log.exception("rules timer failed")
                await asyncio.sleep(1.0)

    async def run_due(self) -> None:
        """Fire every deadline that has passed."""
        now = self.clock()
        for _, timer in self.core.pop_due(now):
            vehicle_id = timer[1]
            if not self._mine(vehicle_id):
                continue
            state = self.core.twin(vehicle_id) or await self.twins.load_twin(vehicle_id)
            self.core.fire(timer, state, now)
        if self.core.has_effects:
            self._dirty.set()

    async def _writer_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            # Shielded: stop() cancels this loop, and a flush that took its effects must still
            # write and publish them, or those alerts would be lost.
            self._flushing = asyncio.ensure_future(self.flush())
            await asyncio.shield(self._flushing)

    async def flush(self) -> None:
        """Persist every effect so far, then publish its transitions in order."""
        async with self._flush_lock:
            # Taken together, with no await between: an operator's change and its audit entry share a batch.
            effects = self.core.take_effects()
            audit, self._audit = self._audit, []
            if not effects and not audit:
                return
            alerts: dict[str, Alert] = {}
            for alert, _ in effects.events:
                alerts[alert.id] = alert
            batch = RulesWrite(
                alerts=list(alerts.values()),
                timers=[t for t in effects.timers.values() if t is not None],
                timers_done=[k for k, t in effects.timers.items() if t is None],
                audit=audit,
            )
            if not await self._write(batch):
                await self._resync(batch)
                return
            for alert, kind in effects.events:
                await self._publish(alert, kind)

    async def _write(self, batch: RulesWrite) -> bool:
        """Write `batch`, retrying failures; False when the database fenced it off (see `_resync`)."""
        delay = 0.05
        while True:
            try:
                await self.store.write(batch)
            # A failed write is retried, never dropped: nothing is published before it lands.
            except Exception as exc:
                if is_fenced(exc):
                    return False
                log.error("rules store write failed, retrying", error=f"{type(exc).__name__}: {exc}", retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.options.write_retry_max_s)
                continue
            return True

    async def _resync(self, batch: RulesWrite) -> None:
        """A fenced write: this worker lost a partition of the batch; nothing of it was stored.

        The batch's vehicles are rebuilt from the store, only those still owned, so memory
        again says what the database says and the new owner evaluates the rest.
        """
        touched = {a.vehicle_id for a in batch.alerts} | {t.vehicle_id for t in batch.timers}
        touched |= {vid for _, vid in batch.timers_done}
        log.warning("rules write fenced off: partitions moved", vehicles=len(touched))
        self.core.forget(touched.__contains__)
        await self._restore(VehicleIds(frozenset(vid for vid in touched if self._mine(vid))), self.clock())

    async def _publish(self, alert: Alert, kind: AlertEventKind) -> None:
        if self.publisher is None:
            return
        try:
            await self.publisher.publish(alert_topic(alert), event_payload(alert, kind), qos=1)
        # The alert is stored; a subscriber that missed the event finds it through the API.
        except Exception as exc:
            self.publish_failures += 1
            log.warning("alert not published", rule=alert.rule, vehicle_id=alert.vehicle_id, error=str(exc))
            return
        self.published += 1
        log.info(
            "alert " + kind.value,
            rule=alert.rule,
            vehicle_id=alert.vehicle_id,
            severity=alert.severity,
            alert_id=alert.id,
        )

    async def _all_twins(self, vehicles: VehicleSet | None = None) -> AsyncIterator[TwinState]:
        after: str | None = None
        while True:
            page = await self.twins.list_twins(TwinFilter(after=after, limit=_PAGE, vehicles=vehicles))
            for state in page:
                yield state
            if len(page) < _PAGE:
                return
            after = page[-1].vehicle_id

    # -- rules --------------------------------------------------------------------------

    def list_rules(self) -> list[RuleDefinition]:
        return [self._definitions[name] for name in sorted(self._definitions)]

    def get_rule(self, name: str) -> RuleDefinition:
        try:
            return self._definitions[name]
        except KeyError:
            raise NotFound(f"no rule named {quote(name)}") from None

    def validate(self, definition: RuleDefinition) -> list[CompileProblem]:
        """Every compile problem of a definition, checked against the known zones; [] when valid."""
        try:
            compile_definition(definition, self.compiler, zones=self._zones)
        except RuleInvalid as exc:
            return exc.problems
        return []

    def compile(self, definition: RuleDefinition) -> CompiledRule:
        return compile_definition(definition, self.compiler, zones=self._zones)

    def _entry(self, actor: Actor | None, action: str, **about: Any) -> AuditEntry | None:
        return None if actor is None else audit_entry(actor, action, self.clock(), **about)

    async def put_rule(self, definition: RuleDefinition, *, actor: Actor | None = None) -> bool:
        """Create or replace a rule; True when it is new. Raises `RuleInvalid`.

        A new or changed rule is evaluated at once on every twin as it is now. With an
        `actor`, the change is audited (`rule.put`) in the same transaction.
        """
        for prefix in self.reserved_prefixes:
            if definition.name.startswith(prefix):
                problem = CompileProblem(
                    "name", f"names starting with {prefix!r} belong to alerts the hub raises itself"
                )
                raise RuleInvalid(definition.name, [problem])
        compiled = self.compile(definition)
        created = definition.name not in self._definitions
        if created and len(self._definitions) >= self.options.max_rules:
            raise TooManyRules(f"there are already {self.options.max_rules} rules (setting 'rules.max_rules')")
        detail = {"created": created, "definition": msgspec.to_builtins(definition)}
        entry = self._entry(actor, "rule.put", target=definition.name, detail=detail)
        await self.store.put_rule(definition, audit=entry)
        self._definitions[definition.name] = definition
        self.core.put_rule(compiled, self.clock())
        if definition.enabled:
            async for state in self._all_twins():
                self.core.check_twin(self.core.twin(state.vehicle_id) or state, self.clock(), names=[definition.name])
        self._changed()
        await self.flush()
        return created

    async def delete_rule(self, name: str, *, actor: Actor | None = None) -> None:
        """Remove a rule; its open alerts are cleared (`cleared_by` "rule-deleted")."""
        self.get_rule(name)
        await self.store.delete_rule(name, audit=self._entry(actor, "rule.delete", target=name))
        del self._definitions[name]
        self.core.remove_rule(name, self.clock())
        await self.flush()

    # -- zones --------------------------------------------------------------------------

    def list_zones(self) -> dict[str, Zone]:
        return dict(sorted(self._zones.items()))

    def get_zone(self, name: str) -> Zone:
        try:
            return self._zones[name]
        except KeyError:
            raise NotFound(f"no zone named {quote(name)}") from None

    async def put_zone(self, name: str, zone: Zone, *, actor: Actor | None = None) -> bool:
        zones = ZoneSet({**self._zones, name: zone})
        created = name not in self._zones
        detail = {"created": created, "zone": msgspec.to_builtins(zone)}
        await self.store.put_zone(name, zone, audit=self._entry(actor, "zone.put", target=name, detail=detail))
        self._zones[name] = zone
        self.core.zones = zones
        return created

    async def delete_zone(self, name: str, *, actor: Actor | None = None) -> list[str]:
        """Remove a zone; returns the rules that name it (their zone tests become unknown)."""
        self.get_zone(name)
        await self.store.delete_zone(name, audit=self._entry(actor, "zone.delete", target=name))
        del self._zones[name]
        self.core.zones = ZoneSet(self._zones)
        return [n for n, rule in self.core.rules.items() if name in _zones_of(rule)]

    # -- alerts -------------------------------------------------------------------------

    async def query_alerts(self, query: AlertQuery) -> list[Alert]:
        await self.flush()
        return await self.store.query_alerts(query)

    async def get_alert(self, alert_id: str) -> Alert:
        await self.flush()
        alert = await self.store.get_alert(alert_id)
        if alert is None:
            raise NotFound(f"no alert with id {quote(alert_id)}")
        return alert

    async def acknowledge(
        self, alert_id: str, user: str, note: str | None = None, *, actor: Actor | None = None
    ) -> Alert:
        stored = await self._known(alert_id)
        if not self._mine(stored.vehicle_id):
            if stored.state is not AlertState.ACTIVE:
                raise AlertNotOpen(f"alert {alert_id} is already acknowledged")
            now = self.clock()
            acked = msgspec.structs.replace(
                stored,
                state=AlertState.ACKNOWLEDGED,
                acknowledged_at=now,
                acknowledged_by=user,
                note=note,
                updated_at=now,
            )
            return await self._change_elsewhere(acked, (AlertState.ACTIVE,), AlertEventKind.ACKNOWLEDGED, actor, note)
        alert = self.core.acknowledge(alert_id, user, note, self.clock())
        self._audit_alert(actor, "alert.ack", alert, note, user)
        await self.flush()
        return alert

    async def clear(self, alert_id: str, user: str, note: str | None = None, *, actor: Actor | None = None) -> Alert:
        stored = await self._known(alert_id)
        if not self._mine(stored.vehicle_id):
            now = self.clock()
            cleared = msgspec.structs.replace(
                stored,
                state=AlertState.CLEARED,
                cleared_at=now,
                cleared_by=user,
                clear_values={},
                updated_at=now,
                clear_note=note if note is not None else stored.clear_note,
            )
            expected = (AlertState.ACTIVE, AlertState.ACKNOWLEDGED)
            return await self._change_elsewhere(cleared, expected, AlertEventKind.CLEARED, actor, note)
        alert = self.core.clear(alert_id, user, note, self.clock())
        self._audit_alert(actor, "alert.clear", alert, note, user)
        self._changed()
        await self.flush()
        return alert

    def _audit_alert(self, actor: Actor | None, action: str, alert: Alert, note: str | None, by: str) -> None:
        """Queue the entry for the flush that writes this alert's change (the next one: nothing awaited since)."""
        entry = self._alert_entry(actor, action, alert, note, by)
        if entry is not None:
            self._audit.append(entry)

    def _alert_entry(
        self, actor: Actor | None, action: str, alert: Alert, note: str | None, by: str
    ) -> AuditEntry | None:
        detail = {"rule": alert.rule, "note": note, "by": by}
        return self._entry(
            actor, action, vehicle_id=alert.vehicle_id, fleet=alert.fleet, target=alert.id, detail=detail
        )

    async def _change_elsewhere(
        self,
        alert: Alert,
        expected: tuple[AlertState, ...],
        kind: AlertEventKind,
        actor: Actor | None,
        note: str | None,
    ) -> Alert:
        """An operator's change to an alert of a vehicle another hub worker runs the rules of.

        Written over the row only while it is still in an `expected` state (the owner may
        have cleared it meanwhile); the owner hears of the change through the database
        (cluster/) and rebuilds that vehicle, so its memory follows.
        """
        action = "alert.ack" if kind is AlertEventKind.ACKNOWLEDGED else "alert.clear"
        by = alert.acknowledged_by if kind is AlertEventKind.ACKNOWLEDGED else alert.cleared_by
        entry = self._alert_entry(actor, action, alert, note, by or "")
        if not await self.store.change_alert(alert, expected, audit=entry):
            raise AlertNotOpen(f"alert {alert.id} changed meanwhile; read it again")
        await self._publish(alert, kind)
        return alert

    def raise_alert(
        self, rule: str, vehicle_id: str, fleet: str, severity: str, message: str, values: dict[str, Any]
    ) -> bool:
        """Raise an alert decided outside the rule language (maintenance due dates) through the same
        lifecycle: stored, published on `alerts/...`, listed, acknowledged and cleared like any other.
        False when one is already open for this rule and vehicle."""
        raised = self.core.raise_external(rule, vehicle_id, fleet, severity, message, values, self.clock())
        self._changed()
        return raised is not None

    def clear_alert(self, rule: str, vehicle_id: str, by: str, values: dict[str, Any] | None = None) -> bool:
        """Clear the open alert `raise_alert` raised; False when none is open."""
        cleared = self.core.clear_external(rule, vehicle_id, by, dict(values or {}), self.clock())
        self._changed()
        return cleared is not None

    def open_alert(self, rule: str, vehicle_id: str) -> Alert | None:
        return self.core.open_alert(rule, vehicle_id)

    async def _known(self, alert_id: str) -> Alert:
        alert = await self.get_alert(alert_id)
        if not alert.state.open:
            raise AlertNotOpen(f"alert {alert_id} is already cleared")
        return alert

    # -- backtests ----------------------------------------------------------------------

    async def backtest(
        self,
        name: str,
        vehicle_id: str,
        start: float | None,
        end: float | None,
        *,
        definition: RuleDefinition | None = None,
    ) -> BacktestResult:
        """Replay the vehicle's history in [start, end) through the rule (or `definition`)."""
        rule = self.compile(definition or self.get_rule(name))
        twin = self.core.twin(vehicle_id) or await self.twins.load_twin(vehicle_id)
        replay = Replay(
            rule,
            ZoneSet(self._zones),
            vehicle_id=vehicle_id,
            fleet=twin.fleet if twin else "default",
            tags=twin.tags if twin else {},
            recheck_s=self.options.recheck_s,
        )
        cursor: str | None = None
        last: float | None = None
        truncated = False
        while True:
            limit = min(1000, self.options.backtest_max_rows - replay.rows)
            if limit <= 0:
                truncated = True
                break
            page = await self.twins.history_page(
                PointQuery(VehicleSelector.one(vehicle_id), start=start, end=end, limit=limit, cursor=cursor)
            )
            replay.feed(page.rows)
            if page.rows:
                last = page.rows[-1].ts
            cursor = page.next_cursor
            if cursor is None:
                break
        horizon = end if end is not None and not truncated else last
        if horizon is not None:
            replay.advance(min(horizon, self.clock()))
        return BacktestResult(
            rule=rule.name,
            vehicle_id=vehicle_id,
            start=isoformat(start),
            end=isoformat(end),
            rows=replay.rows,
            truncated=truncated,
            events=replay.events,
        )


def _zones_of(rule: CompiledRule) -> Iterable[str]:
    yield from rule.when.zones_used
    if rule.clear_when is not None:
        yield from rule.clear_when.zones_used


def _describe(exc: RuleInvalid) -> str:
    lines = [f"rule {quote(exc.name)} is invalid:"]
    for problem in exc.problems:
        where = f" at line {problem.line}, column {problem.column}" if problem.line is not None else ""
        lines.append(f"  {problem.field}: {problem.message}{where}")
        if problem.excerpt:
            lines.extend("    " + text for text in problem.excerpt.split("\n"))
    return "\n".join(lines)
