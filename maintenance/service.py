"""Maintenance: schedules, each vehicle's standing against them, service records and meter corrections.

The service watches twins (a `TwinObserver`, O(1) per update: it keeps each vehicle's
fleet, tags and meters) and, every `check_interval_s`, evaluates every vehicle against
every schedule that selects it. When a vehicle moves into "due soon" or "overdue" the
service raises an alert through the rules engine's lifecycle (`AlertSink`), once per
interval: the interval remembers the stage it alerted, so an acknowledged or hand-cleared
alert does not come back until a service record starts the next interval. The alert is
stored before the interval is, so a crash in between repeats nothing (an open alert is
not raised twice) and loses nothing.

In worker mode (several hubs on one database) a vehicle's due checks run at its owner
only (`owns`, the worker that holds its partition), through that worker's rules engine.
Before each check such a hub takes the schedules and the intervals of the partitions it holds
from the store (another node may have changed a schedule or recorded a service: the due
alerts that service ends are cleared here, by the owner) and the meter corrections made on
other nodes since the last check. A partition gained is rebuilt from the store (`adopt`).
What it answers about vehicles it does not own (`standing_now`, `look_up`) it reads from
the store when asked: their twins (fleet, tags, meters) and intervals.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self

import msgspec
import structlog

from kernel import InvalidPayload, LimitExceeded, NotFound, VehicleIds, VehiclePartitions, VehicleSet
from maintenance.due import evaluate
from maintenance.meters import ENGINE_HOURS, METERS, ODOMETER, MeterDeriver
from maintenance.model import Due, Interval, MeterCorrection, Schedule, ScheduleBody, ServiceRecord, Stage
from maintenance.settings import MaintenanceSettings
from maintenance.stores.protocol import MaintenanceStore, RecordQuery
from security import Actor, AuditEntry, audit_entry
from twin import PATH_SEP, TwinFilter, TwinState, TwinUpdate, UpdateKind

log = structlog.get_logger(__name__)

_PAGE = 500
# Evaluations between yields to the event loop during a check.
_YIELD_EVERY = 1000
RULE_PREFIX = "maintenance."


class AlertSink(Protocol):
    """Where due-soon and overdue alerts go: the rules engine's alert lifecycle."""

    def raise_alert(
        self, rule: str, vehicle_id: str, fleet: str, severity: str, message: str, values: dict[str, Any]
    ) -> bool: ...

    def clear_alert(self, rule: str, vehicle_id: str, by: str, values: dict[str, Any] | None = None) -> bool: ...

    async def flush(self) -> None: ...

    def open_alert(self, rule: str, vehicle_id: str) -> object:
        """The open alert of `rule` for the vehicle, or None."""
        ...


class TwinSource(Protocol):
    async def list_twins(self, query: TwinFilter) -> list[TwinState]: ...

    async def load_twin(self, vehicle_id: str) -> TwinState | None: ...


def alert_rule(schedule_id: str, stage: Stage) -> str:
    """The rule name a schedule's alerts carry: `maintenance.{schedule}.due_soon` or `.overdue`."""
    return f"{RULE_PREFIX}{schedule_id}.{stage.value}"


@dataclass(slots=True)
class _Vehicle:
    fleet: str
    tags: dict[str, Any]
    odometer_km: float | None = None
    engine_hours: float | None = None


@dataclass(slots=True)
class _Counters:
    sweeps: int = 0
    raised: int = 0
    failures: int = 0
    last_error: str | None = None
    evaluated: int = field(default=0)


class MaintenanceService:
    """See the module docstring. Enter it after its store; register it with `TwinService.observers`."""

    def __init__(
        self,
        store: MaintenanceStore,
        twins: TwinSource,
        *,
        settings: MaintenanceSettings | None = None,
        deriver: MeterDeriver | None = None,
        alerts: AlertSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.twins = twins
        self.settings = settings or MaintenanceSettings()
        self.deriver = deriver
        self.alerts = alerts
        self.clock = clock
        self.counters = _Counters()
        self._schedules: dict[str, Schedule] = {}
        self._intervals: dict[tuple[str, str], Interval] = {}
        self._vehicles: dict[str, _Vehicle] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # Set in worker mode: the vehicles this hub checks (see the module docstring), and the same
        # as partitions, so the store can choose their rows.
        self.owns: Callable[[str], bool] | None = None
        self.held: Callable[[], VehiclePartitions] | None = None
        self._started = False
        # Corrections applied here, and the time up to which other nodes' were taken (worker mode).
        self._applied: set[str] = set()
        self._corrections_seen: float = 0.0

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._schedules = {s.id: s for s in await self.store.list_schedules()}
        self._intervals = {(i.schedule_id, i.vehicle_id): i for i in await self.store.intervals()}
        async for state in self._all_twins():
            self._see(state)
        self._corrections_seen = self.clock()
        if self.owns is not None:
            # What was corrected before this start is in the twins already (or was lost with its node).
            await self._take_corrections(apply=False)
        self._started = True
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="maintenance-checks")
        log.info("maintenance started", schedules=len(self._schedules), vehicles=len(self._vehicles))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _all_twins(
        self, vehicles: VehicleSet | None = None, fleet: str | None = None
    ) -> AsyncIterator[TwinState]:
        after: str | None = None
        while True:
            page = await self.twins.list_twins(TwinFilter(fleet=fleet, after=after, limit=_PAGE, vehicles=vehicles))
            for state in page:
                yield state
            if len(page) < _PAGE:
                return
            after = page[-1].vehicle_id

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.check_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.check()
            # A failed check is retried at the next interval; the failure is counted and logged.
            except Exception as exc:
                self.counters.failures += 1
                self.counters.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("maintenance check failed")

    def check_soon(self) -> None:
        """Run a check now instead of at the next interval (after a schedule or service changes)."""
        self._wake.set()

    # -- the observer ---------------------------------------------------------------------

    def twin_updated(self, updates: list[TwinUpdate]) -> None:
        for update in updates:
            if update.kind is UpdateKind.TELEMETRY and not any(p and p[0] == METERS for p in update.changed):
                continue
            if update.kind in (UpdateKind.TELEMETRY, UpdateKind.TAGS):
                self._see(update.state)

    def _see(self, state: TwinState) -> None:
        entry = self._vehicles.get(state.vehicle_id)
        if entry is None:
            entry = self._vehicles[state.vehicle_id] = _Vehicle(state.fleet, dict(state.tags))
        else:
            entry.fleet, entry.tags = state.fleet, dict(state.tags)
        _read_meters(state, entry)

    def meters(self, vehicle_id: str) -> tuple[float | None, float | None]:
        """(odometer_km, engine_hours) as the hub knows them now, corrections included."""
        entry = self._vehicles.get(vehicle_id)
        odo = entry.odometer_km if entry else None
        hours = entry.engine_hours if entry else None
        if self.deriver is not None:
            d_odo, d_hours = self.deriver.values(vehicle_id)
            odo = d_odo if d_odo is not None else odo
            hours = d_hours if d_hours is not None else hours
        return odo, hours

    async def look_up(self, vehicle_id: str) -> None:
        """Read a vehicle this hub does not own from the store (worker mode), so what it answers about it
        (fleet, tags, meters) is what the owner last committed, even for a vehicle created after this start."""
        if self.owns is None or self.owns(vehicle_id):
            return
        state = await self.twins.load_twin(vehicle_id)
        if state is not None:
            self._see(state)
        # Checks read only the held partitions' intervals: this vehicle's may be older here.
        for interval in await self.store.intervals(VehicleIds(frozenset({vehicle_id}))):
            self._intervals[(interval.schedule_id, interval.vehicle_id)] = interval

    def fleet_of(self, vehicle_id: str) -> str:
        entry = self._vehicles.get(vehicle_id)
        if entry is None:
            raise NotFound(f"vehicle '{vehicle_id}' not found")
        return entry.fleet

    # -- due evaluation -------------------------------------------------------------------

    def _interval(
        self,
        schedule: Schedule,
        vehicle_id: str,
        entry: _Vehicle,
        now: float,
        meters: tuple[float | None, float | None],
        intervals: dict[tuple[str, str], Interval] | None = None,
    ) -> tuple[Interval, bool]:
        """The vehicle's interval of `schedule` (from `intervals`, else this hub's), begun now at `meters`
        if it has none; and whether it changed."""
        odo, hours = meters
        interval = (self._intervals if intervals is None else intervals).get((schedule.id, vehicle_id))
        if interval is None:
            return Interval(schedule.id, vehicle_id, entry.fleet, now, odo, hours), True
        changes: dict[str, Any] = {}
        # A measure first seen after the interval began starts counting from its first value.
        if interval.start_odometer_km is None and odo is not None:
            changes["start_odometer_km"] = odo
        if interval.start_engine_hours is None and hours is not None:
            changes["start_engine_hours"] = hours
        if interval.fleet != entry.fleet:
            changes["fleet"] = entry.fleet
        if not changes:
            return interval, False
        # A copy: only `check` keeps and stores a changed interval. Changed in place, a due list
        # read before the check would leave the check nothing to store, and the next read of
        # the stored interval would begin counting again from that later value.
        return msgspec.structs.replace(interval, **changes), True

    def standing(self, now: float | None = None) -> list[tuple[Schedule, Interval, Due]]:
        """Every (schedule, vehicle) the schedules select, with its due point; intervals not yet stored included.

        From what this hub holds; in worker mode `standing_now` is right for vehicles it does not own too.
        """
        at = self.clock() if now is None else now
        return self._standing(self._vehicles.items(), at)

    def _standing(
        self,
        vehicles: Iterable[tuple[str, _Vehicle]],
        at: float,
        intervals: dict[tuple[str, str], Interval] | None = None,
        schedules: Iterable[Schedule] | None = None,
    ) -> list[tuple[Schedule, Interval, Due]]:
        out: list[tuple[Schedule, Interval, Due]] = []
        chosen = list(vehicles)
        for schedule in self._schedules.values() if schedules is None else schedules:
            for vid, entry in chosen:
                if not schedule.selects(vid, entry.fleet, entry.tags):
                    continue
                # The store's intervals come with the twin's meters (a vehicle this hub does not own).
                odo, hours = self.meters(vid) if intervals is None else (entry.odometer_km, entry.engine_hours)
                interval, _ = self._interval(schedule, vid, entry, at, (odo, hours), intervals)
                out.append((schedule, interval, evaluate(schedule, interval, odo, hours, at)))
        return out

    async def standing_now(
        self, *, fleet: str | None = None, vehicle_id: str | None = None, now: float | None = None
    ) -> list[tuple[Schedule, Interval, Due]]:
        """`standing` (narrowed to a fleet or a vehicle if given), right on every node.

        In worker mode a hub knows only its own vehicles' meters and intervals as they are now.
        The others' are read from the store, a page of twins (fleet, tags, meters as their
        owner last committed them) and those vehicles' intervals at a time, chosen in SQL: the
        vehicles of the partitions this hub does not hold (every vehicle on an API node). The
        schedules are read too (a few rows), so one made on another node is listed at once.
        """
        at = self.clock() if now is None else now
        if self.held is None or self.owns is None:
            return [
                row
                for row in self.standing(at)
                if (fleet is None or row[2].fleet == fleet) and (vehicle_id is None or row[2].vehicle_id == vehicle_id)
            ]
        owns, held = self.owns, self.held()
        # Not kept: `check` compares what it held with the store to clear a deleted schedule's alerts.
        schedules = await self.store.list_schedules()
        mine = (
            (vid, entry)
            for vid, entry in self._vehicles.items()
            if owns(vid) and (fleet is None or entry.fleet == fleet) and (vehicle_id is None or vid == vehicle_id)
        )
        out = self._standing(mine, at, schedules=schedules)
        others: VehicleSet | None = None
        if vehicle_id is not None:
            others = VehicleIds(frozenset({vehicle_id}))
        elif held.parts:
            others = VehiclePartitions(frozenset(range(held.count)) - held.parts, held.count)
        page: list[tuple[str, _Vehicle]] = []
        async for state in self._all_twins(others, fleet):
            if owns(state.vehicle_id):
                continue  # gained meanwhile: counted above, or by the next call
            entry = _Vehicle(state.fleet, dict(state.tags))
            _read_meters(state, entry)
            page.append((state.vehicle_id, entry))
            if len(page) >= _PAGE:
                out += await self._standing_read(page, at, schedules)
                page = []
        if page:
            out += await self._standing_read(page, at, schedules)
        return out

    async def _standing_read(
        self, vehicles: list[tuple[str, _Vehicle]], at: float, schedules: list[Schedule]
    ) -> list[tuple[Schedule, Interval, Due]]:
        stored = await self.store.intervals(VehicleIds(frozenset(vid for vid, _ in vehicles)))
        return self._standing(vehicles, at, {(i.schedule_id, i.vehicle_id): i for i in stored}, schedules)

    async def check(self) -> int:
        """Evaluate every vehicle against every schedule; raise what became due; the alerts raised."""
        async with self._lock:
            if self.owns is not None:
                await self._catch_up()
            now = self.clock()
            changed: list[Interval] = []
            raised = 0
            # (interval, the stage it had, the alert rule raised) to check once the alerts are stored.
            pending: list[tuple[Interval, Stage, str]] = []
            for schedule in list(self._schedules.values()):
                for vid, entry in list(self._vehicles.items()):
                    if not self._mine(vid) or not schedule.selects(vid, entry.fleet, entry.tags):
                        continue
                    odo, hours = self.meters(vid)
                    interval, moved = self._interval(schedule, vid, entry, now, (odo, hours))
                    due = evaluate(schedule, interval, odo, hours, now)
                    self.counters.evaluated += 1
                    if due.status.rank > interval.stage.rank:
                        if self._alert(schedule, due):
                            raised += 1
                            pending.append((interval, interval.stage, alert_rule(schedule.id, due.status)))
                        interval.stage = due.status
                        moved = True
                    if moved:
                        self._intervals[(schedule.id, vid)] = interval
                        changed.append(interval)
                    if self.counters.evaluated % _YIELD_EVERY == 0:
                        # A large fleet's check must not hold the event loop (and ingest) for its whole length.
                        await asyncio.sleep(0)
            if raised and self.alerts is not None:
                # Alerts are stored before the intervals that remember them.
                await self.alerts.flush()
                if self.owns is not None:
                    for interval, stage, rule in pending:
                        if self.alerts.open_alert(rule, interval.vehicle_id) is None:
                            # The database fenced the alert off (the partition moved): the interval must
                            # not remember an alert that was never stored, or the next owner never raises it.
                            interval.stage = stage
                            raised -= 1
            await self.store.put_intervals(changed)
            self.counters.sweeps += 1
            self.counters.raised += raised
            return raised

    def _mine(self, vehicle_id: str) -> bool:
        return self.owns is None or self.owns(vehicle_id)

    # -- worker mode ----------------------------------------------------------------------

    async def adopt(self, vehicle: Callable[[str], bool]) -> None:
        """Take the vehicles `vehicle` selects from the store (this hub gained their partition)."""
        if not self._started:
            return
        # A worker's partitions are chosen by the stores (in SQL), not by reading every vehicle's rows.
        chosen = vehicle if isinstance(vehicle, VehiclePartitions | VehicleIds) else None
        async with self._lock:
            async for state in self._all_twins(chosen):
                if vehicle(state.vehicle_id):
                    self._see(state)
            for interval in await self.store.intervals(chosen):
                if vehicle(interval.vehicle_id):
                    self._intervals[(interval.schedule_id, interval.vehicle_id)] = interval
        self.check_soon()

    def release(self, vehicle: Callable[[str], bool]) -> None:
        """Nothing to hand over: intervals are stored as they change, and `check` skips what is not owned."""

    async def _catch_up(self) -> None:
        """Take what other nodes changed since the last check: schedules, intervals, corrections."""
        schedules = {s.id: s for s in await self.store.list_schedules()}
        for gone in set(self._schedules) - set(schedules):
            for key in [k for k in self._intervals if k[0] == gone]:
                del self._intervals[key]
                if self.alerts is not None and self._mine(key[1]):
                    for stage in (Stage.DUE_SOON, Stage.OVERDUE):
                        self.alerts.clear_alert(alert_rule(gone, stage), key[1], "schedule-deleted")
        self._schedules = schedules
        # Only the held partitions' intervals: the others are read when asked about (`standing_now`, `look_up`).
        for stored in await self.store.intervals(self.held() if self.held is not None else None):
            key = (stored.schedule_id, stored.vehicle_id)
            held = self._intervals.get(key)
            self._intervals[key] = stored
            moved_on = held is not None and held.service_id != stored.service_id
            if moved_on and self.alerts is not None and self._mine(stored.vehicle_id):
                # A service recorded on another node: the owner clears the due alerts it ends.
                values = {"service_id": stored.service_id}
                for stage in (Stage.DUE_SOON, Stage.OVERDUE):
                    rule = alert_rule(stored.schedule_id, stage)
                    self.alerts.clear_alert(rule, stored.vehicle_id, "service", values)
        if self.deriver is not None:
            await self._take_corrections()

    async def _take_corrections(self, *, apply: bool = True) -> None:
        """Apply the corrections other nodes stored for vehicles owned here (read newest first, paged).

        The window reaches one check interval further back than the last correction seen,
        since node clocks differ a little; the ids applied keep a correction from applying twice.
        """
        if self.deriver is None:
            return
        since, before = self._corrections_seen - self.settings.check_interval_s, None
        found: list[MeterCorrection] = []
        while True:
            page = await self.store.list_corrections(RecordQuery(before=before, limit=_PAGE))
            fresh = [c for c in page if c.at >= since]
            found += fresh
            if len(fresh) < len(page) or len(page) < _PAGE:
                break
            before = (page[-1].at, page[-1].id)
        for correction in reversed(found):
            self._corrections_seen = max(self._corrections_seen, correction.at)
            if correction.id in self._applied:
                continue
            # Seen once, whoever owns the vehicle: its owner applies it, nobody applies it twice.
            self._applied.add(correction.id)
            if apply and self._mine(correction.vehicle_id):
                self.deriver.correct(correction.vehicle_id, correction.odometer_km, correction.engine_hours)
        # Ids are only needed while a correction could still be read as new.
        self._applied = {c.id for c in found if c.id in self._applied}

    def _alert(self, schedule: Schedule, due: Due) -> bool:
        if self.alerts is None:
            return False
        body = schedule.body
        values = {
            k: v
            for k, v in msgspec.structs.asdict(due).items()
            if v is not None and k not in {"vehicle_id", "fleet", "interval_started_at"}
        }
        values["status"] = due.status.value
        values["schedule"] = body.name
        if due.status is Stage.OVERDUE:
            self.alerts.clear_alert(alert_rule(schedule.id, Stage.DUE_SOON), due.vehicle_id, "overdue", values)
            severity, what = body.severity_overdue, "overdue"
        else:
            severity, what = body.severity_due_soon, "due soon"
        message = f"{body.name} {what} for {due.vehicle_id}{_left(due)}"
        return self.alerts.raise_alert(
            alert_rule(schedule.id, due.status), due.vehicle_id, due.fleet, severity, message, values
        )

    # -- schedules ------------------------------------------------------------------------

    def list_schedules(self) -> list[Schedule]:
        return [self._schedules[k] for k in sorted(self._schedules)]

    def get_schedule(self, schedule_id: str) -> Schedule:
        found = self._schedules.get(schedule_id)
        if found is None:
            raise NotFound(f"maintenance schedule '{schedule_id}' not found")
        return found

    async def put_schedule(self, schedule_id: str, body: ScheduleBody, *, actor: Actor | None = None) -> Schedule:
        now = self.clock()
        old = self._schedules.get(schedule_id)
        if old is None and len(self._schedules) >= self.settings.max_schedules:
            raise LimitExceeded(
                "too_many_schedules", f"at most {self.settings.max_schedules} schedules (maintenance.max_schedules)"
            )
        schedule = Schedule(schedule_id, body, old.created_at if old else now, now)
        entry = self._entry(actor, "maintenance.schedule.put", now, fleet=body.selector.fleet, target=schedule_id)
        await self.store.put_schedule(schedule, audit=entry)
        self._schedules[schedule_id] = schedule
        self.check_soon()
        return schedule

    async def delete_schedule(self, schedule_id: str, *, actor: Actor | None = None) -> None:
        schedule = self.get_schedule(schedule_id)
        entry = self._entry(actor, "maintenance.schedule.delete", self.clock(), target=schedule_id)
        await self.store.delete_schedule(schedule_id, audit=entry)
        del self._schedules[schedule_id]
        for key in [k for k in self._intervals if k[0] == schedule_id]:
            del self._intervals[key]
            if self.alerts is not None:
                for stage in (Stage.DUE_SOON, Stage.OVERDUE):
                    self.alerts.clear_alert(alert_rule(schedule.id, stage), key[1], "schedule-deleted")

    # -- service records and corrections ---------------------------------------------------

    async def record_service(
        self,
        vehicle_id: str,
        schedule_id: str,
        *,
        by: str,
        done_at: float | None = None,
        odometer_km: float | None = None,
        engine_hours: float | None = None,
        note: str | None = None,
        actor: Actor | None = None,
    ) -> ServiceRecord:
        """Close the vehicle's interval of the schedule and start the next at this service."""
        schedule = self.get_schedule(schedule_id)
        await self.look_up(vehicle_id)
        fleet = self.fleet_of(vehicle_id)
        entry = self._vehicles[vehicle_id]
        if not schedule.selects(vehicle_id, fleet, entry.tags):
            raise InvalidPayload("not_scheduled", f"schedule '{schedule_id}' does not apply to vehicle '{vehicle_id}'")
        now = self.clock()
        odo, hours = self.meters(vehicle_id)
        record = ServiceRecord(
            id=secrets.token_hex(8),
            vehicle_id=vehicle_id,
            fleet=fleet,
            schedule_id=schedule_id,
            done_at=now if done_at is None else done_at,
            recorded_at=now,
            by=by,
            odometer_km=odo if odometer_km is None else odometer_km,
            engine_hours=hours if engine_hours is None else engine_hours,
            note=note,
        )
        interval = Interval(
            schedule_id,
            vehicle_id,
            fleet,
            record.done_at,
            record.odometer_km,
            record.engine_hours,
            Stage.OK,
            record.id,
        )
        audit = self._entry(
            actor,
            "maintenance.service.record",
            now,
            vehicle_id=vehicle_id,
            fleet=fleet,
            target=schedule_id,
            detail={"service_id": record.id, "odometer_km": record.odometer_km, "engine_hours": record.engine_hours},
        )
        async with self._lock:
            await self.store.record_service(record, interval, audit=audit)
            self._intervals[(schedule_id, vehicle_id)] = interval
        if self.alerts is not None:
            values = {"service_id": record.id}
            cleared = [
                self.alerts.clear_alert(alert_rule(schedule_id, stage), vehicle_id, "service", values)
                for stage in (Stage.DUE_SOON, Stage.OVERDUE)
            ]
            if any(cleared):
                # The caller reads the alert as cleared as soon as the service is recorded.
                await self.alerts.flush()
        self.check_soon()
        return record

    async def correct_meters(
        self,
        vehicle_id: str,
        *,
        by: str,
        odometer_km: float | None = None,
        engine_hours: float | None = None,
        note: str | None = None,
        actor: Actor | None = None,
    ) -> MeterCorrection:
        """Set a vehicle's odometer or engine hours; audited, and in the twin from the vehicle's next message."""
        if odometer_km is None and engine_hours is None:
            raise InvalidPayload("bad_body", "give odometer_km, engine_hours or both")
        if self.deriver is None:
            raise InvalidPayload("meters_off", "the hub does not derive meters (maintenance.meters_enabled = false)")
        await self.look_up(vehicle_id)
        fleet = self.fleet_of(vehicle_id)
        now = self.clock()
        previous = self.meters(vehicle_id)
        correction = MeterCorrection(
            id=secrets.token_hex(8),
            vehicle_id=vehicle_id,
            fleet=fleet,
            at=now,
            by=by,
            odometer_km=odometer_km,
            engine_hours=engine_hours,
            previous_odometer_km=previous[0],
            previous_engine_hours=previous[1],
            note=note,
        )
        audit = self._entry(
            actor,
            "maintenance.meters.correct",
            now,
            vehicle_id=vehicle_id,
            fleet=fleet,
            detail={
                "odometer_km": odometer_km,
                "engine_hours": engine_hours,
                "previous_odometer_km": previous[0],
                "previous_engine_hours": previous[1],
            },
        )
        await self.store.add_correction(correction, audit=audit)
        if self._mine(vehicle_id):
            self._applied.add(correction.id)
            self.deriver.correct(vehicle_id, odometer_km, engine_hours)
        self.check_soon()
        return correction

    async def list_services(self, query: RecordQuery) -> list[ServiceRecord]:
        return await self.store.list_services(query)

    async def list_corrections(self, query: RecordQuery) -> list[MeterCorrection]:
        return await self.store.list_corrections(query)

    @staticmethod
    def _entry(actor: Actor | None, action: str, ts: float, **about: Any) -> AuditEntry | None:
        return audit_entry(actor, action, ts, **about) if actor is not None else None


def _read_meters(state: TwinState, entry: _Vehicle) -> None:
    """The twin's meters into `entry` (a meter the twin does not have keeps its value)."""
    for attr, key in (("odometer_km", ODOMETER), ("engine_hours", ENGINE_HOURS)):
        found = state.reported.get(f"{METERS}{PATH_SEP}{key}")
        if found is not None and isinstance(found.value, int | float) and not isinstance(found.value, bool):
            setattr(entry, attr, float(found.value))


def _left(due: Due) -> str:
    parts = []
    if due.remaining_km is not None:
        parts.append(f"{due.remaining_km:,.0f} km")
    if due.remaining_engine_hours is not None:
        parts.append(f"{due.remaining_engine_hours:,.1f} engine h")
    if due.remaining_days is not None:
        parts.append(f"{due.remaining_days:,.1f} days")
    return f" ({', '.join(parts)} left)" if parts else ""
