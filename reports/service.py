"""Fleet reports from raw history: daily summaries, stops, zone visits; CSV and JSON; scheduled delivery.

Every report streams the history of its vehicles once, page by page (rows come grouped
by vehicle, then in device-time order), folding each row as it passes, so memory holds
one page and the folds of one vehicle, never the history itself. Days are local days of the
report's time zone (DST-aware: a day may have 23 or 25 hours).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import csv
import datetime as dt
import io
import time
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, Protocol, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import structlog

from kernel import InvalidPayload, LimitExceeded, NotFound
from reports.fold import REPORT_FIELDS, DayFold, VisitFold, fleet_day
from reports.model import FleetDay, Period, ReportSchedule, ReportScheduleBody, StopRow, VehicleDay, VisitRow
from reports.settings import ReportSettings
from reports.stores.protocol import ReportStore
from rules import Alert, AlertQuery, Zone
from security import Actor, AuditEntry, audit_entry
from twin import HistoryReader, PointQuery, TripDetector, TripSettings, TwinFilter, TwinState, VehicleSelector

log = structlog.get_logger(__name__)

_PAGE = 1000


class TwinLister(Protocol):
    async def list_twins(self, query: TwinFilter) -> list[TwinState]: ...


class AlertSource(Protocol):
    async def query_alerts(self, query: AlertQuery) -> list[Alert]: ...


class ReportSink(Protocol):
    """Where scheduled reports go: the notifications outbox."""

    async def report(self, channel_id: str, key: str, payload: dict[str, Any]) -> int: ...


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidPayload("bad_tz", f"'tz' must be an IANA time zone such as Europe/Madrid, got {name!r}") from None


def day_bounds(day: dt.date, tz: ZoneInfo) -> tuple[float, float]:
    """Epoch seconds of the local midnight starting `day` and the next one."""
    start = dt.datetime.combine(day, dt.time(), tz)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz)
    return start.timestamp(), end.timestamp()


def parse_day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidPayload("bad_query", f"a day is YYYY-MM-DD, got {text[:32]!r}") from None


def local(ts: float | None, tz: ZoneInfo) -> str | None:
    """RFC 3339 in the report's time zone, with its offset."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")


class DailyReport(msgspec.Struct):
    tz: str
    days: list[str]
    start: float
    end: float
    vehicles: list[VehicleDay]
    fleets: list[FleetDay]


class ReportService:
    """See the module docstring. Enter it to run report schedules."""

    def __init__(
        self,
        history: HistoryReader,
        twins: TwinLister,
        *,
        settings: ReportSettings | None = None,
        alerts: AlertSource | None = None,
        zones: Callable[[], Mapping[str, Zone]] | None = None,
        sink: ReportSink | None = None,
        store: ReportStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.history = history
        self.twins = twins
        self.settings = settings or ReportSettings()
        self.alerts = alerts
        self.zones = zones
        self.sink = sink
        self.store = store
        self.clock = clock
        self._schedules: dict[str, ReportSchedule] = {}
        self._task: asyncio.Task[None] | None = None
        # Set in worker mode: whether this hub sends the scheduled reports now. One hub does; every
        # hub re-reads the schedules each check, since another node may have changed them.
        self.runs_schedules: Callable[[], bool] | None = None
        self.sent = 0
        self.failures = 0

    # -- reading history ------------------------------------------------------------------

    async def _rows(
        self, vehicles: VehicleSelector, start: float, end: float, fields: tuple[str, ...]
    ) -> AsyncIterator[tuple[str, float, dict[str, Any]]]:
        """(vehicle, device time, data) of every row, grouped by vehicle and in device-time order, page by page."""
        query = PointQuery(vehicles, start=start, end=end, fields=fields, limit=self.settings.rows_per_read)
        cursor: str | None = None
        while True:
            page = await self.history.history_page(msgspec.structs.replace(query, cursor=cursor))
            for row in page.rows:
                yield row.vehicle_id, row.ts, row.data
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def _fleets(self, fleet: str | None) -> dict[str, str]:
        out: dict[str, str] = {}
        after: str | None = None
        while True:
            page = await self.twins.list_twins(TwinFilter(fleet=fleet, after=after, limit=_PAGE))
            out.update((t.vehicle_id, t.fleet) for t in page)
            if len(page) < _PAGE:
                return out
            after = page[-1].vehicle_id

    @staticmethod
    def _vehicle_set(fleet: str | None, vehicles: tuple[str, ...] | None) -> VehicleSelector:
        return VehicleSelector(vehicle_ids=vehicles, fleet=fleet)

    # -- reports ----------------------------------------------------------------------------

    async def daily(
        self,
        *,
        fleet: str | None,
        first_day: dt.date,
        days: int = 1,
        tz: str = "UTC",
        vehicles: tuple[str, ...] | None = None,
    ) -> DailyReport:
        """A summary per vehicle and per fleet for each of `days` local days from `first_day`."""
        if not 1 <= days <= self.settings.max_days:
            raise LimitExceeded("range_too_long", f"a report covers 1-{self.settings.max_days} days (reports.max_days)")
        zone = zone_of(tz)
        bounds = [day_bounds(first_day + dt.timedelta(days=i), zone) for i in range(days)]
        start, end = bounds[0][0], bounds[-1][1]
        starts = [a for a, _ in bounds]
        fleets = await self._fleets(fleet)
        alerts: dict[tuple[str, int], int] = {}
        if self.alerts is not None:
            query = AlertQuery(start=start, end=end, fleets=(fleet,) if fleet else None, limit=self.settings.max_alerts)
            for alert in await self.alerts.query_alerts(query):
                index = next((i for i, (a, b) in enumerate(bounds) if a <= alert.raised_at < b), None)
                if index is not None:
                    alerts[(alert.vehicle_id, index)] = alerts.get((alert.vehicle_id, index), 0) + 1
        out: list[VehicleDay] = []
        s = self.settings
        # One fold per day of the vehicle whose rows are passing; finished when the next vehicle starts.
        folds: dict[int, DayFold] = {}
        current: str | None = None

        def finish() -> None:
            for index, fold in sorted(folds.items()):
                out.append(fold.finish(alerts.get((fold.day.vehicle_id, index), 0)))
            folds.clear()

        async for vid, ts, data in self._rows(self._vehicle_set(fleet, vehicles), start, end, REPORT_FIELDS):
            if vid != current:
                finish()
                current = vid
            index = bisect.bisect_right(starts, ts) - 1
            if not 0 <= index < days or ts >= bounds[index][1]:
                continue
            fold = folds.get(index)
            if fold is None:
                label = (first_day + dt.timedelta(days=index)).isoformat()
                vfleet = fleets.get(vid, fleet or "")
                fold = folds[index] = DayFold(vid, vfleet, label, moving_kmh=s.moving_kmh, max_gap_s=s.max_gap_s)
            fold.feed(ts, data)
        finish()
        out.sort(key=lambda d: (d.date, d.vehicle_id))
        by_fleet: dict[tuple[str, str], list[VehicleDay]] = {}
        for d in out:
            by_fleet.setdefault((d.fleet, d.date), []).append(d)
        totals = [fleet_day(f, date, group) for (f, date), group in sorted(by_fleet.items())]
        labels = [(first_day + dt.timedelta(days=i)).isoformat() for i in range(days)]
        return DailyReport(tz, labels, start, end, out, totals)

    async def stops(
        self, *, fleet: str | None, start: float, end: float, vehicles: tuple[str, ...] | None = None
    ) -> list[StopRow]:
        """Stops between trips: where, from when, how long."""
        s = self.settings
        out: list[StopRow] = []
        current: str | None = None
        detector = TripDetector(TripSettings(speed_threshold_kmh=s.moving_kmh, dwell_s=s.stop_min_s))

        def finish(vid: str | None) -> None:
            if vid is None:
                return
            for stop in detector.finish().stops:
                at = stop.position
                out.append(
                    StopRow(vid, stop.start, stop.end, stop.duration_s, at.lat if at else None, at.lon if at else None)
                )

        async for vid, ts, data in self._rows(self._vehicle_set(fleet, vehicles), start, end, REPORT_FIELDS):
            if vid != current:
                finish(current)
                current = vid
                detector = TripDetector(TripSettings(speed_threshold_kmh=s.moving_kmh, dwell_s=s.stop_min_s))
            detector.feed(ts, data)
        finish(current)
        return out

    async def visits(
        self, *, fleet: str | None, start: float, end: float, vehicles: tuple[str, ...] | None = None
    ) -> list[VisitRow]:
        """Stays inside each zone: entered, left, dwell."""
        zones = dict(self.zones()) if self.zones is not None else {}
        if not zones:
            return []
        out: list[VisitRow] = []
        fold: VisitFold | None = None
        async for vid, ts, data in self._rows(self._vehicle_set(fleet, vehicles), start, end, ("gps.lat", "gps.lon")):
            if fold is None or fold.vehicle_id != vid:
                if fold is not None:
                    out += fold.finish()
                fold = VisitFold(vid, zones, start, end)
            fold.feed(ts, data)
        if fold is not None:
            out += fold.finish()
        return out

    # -- schedules --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self.store is not None:
            self._schedules = {s.id: s for s in await self.store.list_schedules()}
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="report-schedules")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            try:
                if self.runs_schedules is None:
                    await self.run_schedules()
                else:
                    await self.refresh_schedules()
                    if self.runs_schedules():
                        await self.run_schedules()
            # A failed run is retried at the next check; a report already queued is not queued twice.
            except Exception:
                self.failures += 1
                log.exception("report schedules failed")
            await asyncio.sleep(self.settings.schedule_check_s)

    async def refresh_schedules(self) -> None:
        """Take the schedules (and the period each last sent) from the store again."""
        if self.store is not None:
            self._schedules = {s.id: s for s in await self.store.list_schedules()}

    def list_schedules(self) -> list[ReportSchedule]:
        return [self._schedules[k] for k in sorted(self._schedules)]

    def get_schedule(self, schedule_id: str) -> ReportSchedule:
        found = self._schedules.get(schedule_id)
        if found is None:
            raise NotFound(f"report schedule '{schedule_id}' not found")
        return found

    async def put_schedule(
        self, schedule_id: str, body: ReportScheduleBody, *, actor: Actor | None = None
    ) -> tuple[ReportSchedule, bool]:
        if self.store is None:
            raise InvalidPayload("no_store", "report schedules need the reports store")
        zone_of(body.tz)
        old = self._schedules.get(schedule_id)
        if old is None and len(self._schedules) >= self.settings.max_schedules:
            raise LimitExceeded("too_many_schedules", f"at most {self.settings.max_schedules} (reports.max_schedules)")
        now = self.clock()
        schedule = ReportSchedule(
            schedule_id, body, old.created_at if old else now, now, old.last_period if old else None
        )
        entry = _entry(actor, "reports.schedule.put", now, fleet=body.fleet, target=schedule_id)
        await self.store.put_schedule(schedule, audit=entry)
        self._schedules[schedule_id] = schedule
        return schedule, old is None

    async def delete_schedule(self, schedule_id: str, *, actor: Actor | None = None) -> None:
        schedule = self.get_schedule(schedule_id)
        if self.store is not None:
            entry = _entry(
                actor, "reports.schedule.delete", self.clock(), fleet=schedule.body.fleet, target=schedule_id
            )
            await self.store.delete_schedule(schedule_id, audit=entry)
        del self._schedules[schedule_id]

    @staticmethod
    def due_period(body: ReportScheduleBody, now: float) -> tuple[str, dt.date, int] | None:
        """The last complete period (label, first day, days) once its report is due, else None."""
        zone = zone_of(body.tz)
        local_now = dt.datetime.fromtimestamp(now, zone)
        if local_now.hour < body.at_hour:
            return None
        today = local_now.date()
        if body.period is Period.DAILY:
            day = today - dt.timedelta(days=1)
            return day.isoformat(), day, 1
        monday = today - dt.timedelta(days=today.weekday()) - dt.timedelta(days=7)
        return f"week-of-{monday.isoformat()}", monday, 7

    async def run_schedules(self) -> int:
        """Queue every report whose period is complete and not yet sent; the number queued."""
        queued = 0
        for schedule in list(self._schedules.values()):
            due = self.due_period(schedule.body, self.clock())
            if due is None or due[0] == schedule.last_period:
                continue
            label, first_day, days = due
            try:
                payload = await self.schedule_payload(schedule, label, first_day, days)
                if self.sink is None:
                    raise InvalidPayload("no_sink", "scheduled reports need notifications (notifications.enabled)")
                await self.sink.report(schedule.body.channel, f"{schedule.id}:{label}", payload)
            # One schedule's failure (its channel deleted, the store down) is retried at the next check
            # and never keeps the other schedules from sending.
            except Exception:
                self.failures += 1
                log.exception("scheduled report failed", schedule=schedule.id, period=label)
                continue
            if self.store is not None:
                await self.store.mark_sent(schedule.id, label)
            self._schedules[schedule.id] = msgspec.structs.replace(schedule, last_period=label)
            self.sent += 1
            queued += 1
        return queued

    async def schedule_payload(
        self, schedule: ReportSchedule, label: str, first_day: dt.date, days: int
    ) -> dict[str, Any]:
        body = schedule.body
        report = await self.daily(fleet=body.fleet, first_day=first_day, days=days, tz=body.tz)
        zone = zone_of(body.tz)
        title = f"Fleet {body.fleet} summary, {label} ({body.tz})"
        lines = [title, ""]
        for f in report.fleets:
            lines.append(
                f"{f.date}: {f.vehicles} vehicles, {f.distance_km:.1f} km, driving {f.driving_s / 3600:.1f} h, "
                f"idle {f.idle_s / 3600:.1f} h, {f.alerts} alerts"
            )
        return {
            "title": title,
            "fleet": body.fleet,
            "period": label,
            "tz": body.tz,
            "filename": f"fleethub-{body.fleet}-{label}.csv",
            "text": "\n".join(lines),
            "fleets": [msgspec.to_builtins(f) for f in report.fleets],
            "csv": daily_csv(report, zone),
        }


def _entry(actor: Actor | None, action: str, ts: float, **about: Any) -> AuditEntry | None:
    return audit_entry(actor, action, ts, **about) if actor is not None else None


# -- rows for JSON and CSV: the same columns, local times -------------------------------------

DAILY_COLUMNS = (
    "date",
    "vehicle_id",
    "fleet",
    "distance_km",
    "distance_source",
    "driving_h",
    "idle_h",
    "max_speed_kmh",
    "avg_speed_kmh",
    "energy_used_pct",
    "fuel_used_l",
    "alerts",
    "samples",
    "first_seen",
    "last_seen",
)
FLEET_COLUMNS = (
    "date",
    "fleet",
    "vehicles",
    "distance_km",
    "driving_h",
    "idle_h",
    "max_speed_kmh",
    "avg_speed_kmh",
    "energy_used_pct",
    "fuel_used_l",
    "alerts",
)
STOP_COLUMNS = ("vehicle_id", "start", "end", "duration_s", "lat", "lon")
VISIT_COLUMNS = ("vehicle_id", "zone", "entered", "left", "dwell_s")


def vehicle_row(d: VehicleDay, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "date": d.date,
        "vehicle_id": d.vehicle_id,
        "fleet": d.fleet,
        "distance_km": d.distance_km,
        "distance_source": d.distance_source,
        "driving_h": round(d.driving_s / 3600, 4),
        "idle_h": round(d.idle_s / 3600, 4),
        "max_speed_kmh": d.max_speed_kmh,
        "avg_speed_kmh": d.avg_speed_kmh,
        "energy_used_pct": d.energy_used_pct,
        "fuel_used_l": d.fuel_used_l,
        "alerts": d.alerts,
        "samples": d.samples,
        "first_seen": local(d.first_ts, tz),
        "last_seen": local(d.last_ts, tz),
    }


def fleet_row(f: FleetDay) -> dict[str, Any]:
    return {
        "date": f.date,
        "fleet": f.fleet,
        "vehicles": f.vehicles,
        "distance_km": f.distance_km,
        "driving_h": round(f.driving_s / 3600, 4),
        "idle_h": round(f.idle_s / 3600, 4),
        "max_speed_kmh": f.max_speed_kmh,
        "avg_speed_kmh": f.avg_speed_kmh,
        "energy_used_pct": f.energy_used_pct,
        "fuel_used_l": f.fuel_used_l,
        "alerts": f.alerts,
    }


def stop_row(s: StopRow, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "vehicle_id": s.vehicle_id,
        "start": local(s.start, tz),
        "end": local(s.end, tz),
        "duration_s": round(s.duration_s, 1),
        "lat": s.lat,
        "lon": s.lon,
    }


def visit_row(v: VisitRow, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "vehicle_id": v.vehicle_id,
        "zone": v.zone,
        "entered": local(v.entered, tz),
        "left": local(v.left, tz),
        "dwell_s": round(v.dwell_s, 1),
    }


def to_csv(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    return out.getvalue()


def daily_csv(report: DailyReport, tz: ZoneInfo) -> str:
    """Vehicle rows, then a blank line and the fleet totals."""
    vehicles = to_csv(DAILY_COLUMNS, [vehicle_row(d, tz) for d in report.vehicles])
    fleets = to_csv(FLEET_COLUMNS, [fleet_row(f) for f in report.fleets])
    return f"{vehicles}\n{fleets}"
