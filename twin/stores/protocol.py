"""The store seam: what the twin service and the API need from a database."""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import msgspec
import structlog

from kernel import DatabaseInfo, InvalidPayload, VehicleSet
from twin.model import HistoryRow, Json, PresenceEvent, TwinState
from twin.paths import get_path
from twin.selector import VehicleSelector

log = structlog.get_logger(__name__)


class Order(enum.Enum):
    ASC = "asc"
    DESC = "desc"


class HistoryQuery(msgspec.Struct, frozen=True):
    vehicle_id: str
    start: float | None = None
    end: float | None = None
    # Top-level or dotted field paths to keep; None keeps every field.
    fields: tuple[str, ...] | None = None
    limit: int = 1000
    order: Order = Order.ASC


class PresenceQuery(msgspec.Struct, frozen=True):
    vehicle_id: str
    start: float | None = None
    end: float | None = None
    limit: int = 1000
    order: Order = Order.ASC


class TwinFilter(msgspec.Struct, frozen=True):
    fleet: str | None = None
    connected: bool | None = None
    # Keyset pagination: vehicle ids strictly after this one.
    after: str | None = None
    limit: int = 100
    # Only these vehicles: a hub worker's partitions (taking them over), or some by id.
    vehicles: VehicleSet | None = None


class PointQuery(msgspec.Struct, frozen=True):
    """Raw history of a set of vehicles, paged with an opaque keyset cursor.

    Rows come grouped by vehicle (vehicle id order), then by device time; ties in
    device time keep the order the rows were written. DESC reverses all of it.
    """

    vehicles: VehicleSelector
    start: float | None = None
    end: float | None = None
    fields: tuple[str, ...] | None = None
    limit: int = 1000
    order: Order = Order.ASC
    cursor: str | None = None


class HistoryPage(msgspec.Struct):
    rows: list[HistoryRow]
    # Pass back as `cursor` for the next page; None on the last page.
    next_cursor: str | None


class Bucket(enum.Enum):
    MINUTE = "1m"
    FIVE_MINUTES = "5m"
    HOUR = "1h"
    DAY = "1d"


class Agg(enum.Enum):
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    LAST = "last"
    COUNT = "count"


class FieldAgg(msgspec.Struct, frozen=True):
    field: str
    agg: Agg

    @property
    def key(self) -> str:
        return f"{self.field}:{self.agg.value}"


class AggregateQuery(msgspec.Struct, frozen=True):
    """Bucketed aggregates of numeric fields.

    Sub-day buckets are aligned to UTC; `1d` buckets run from midnight to midnight in
    `tz` (an IANA name), so they are 23 or 25 hours long on DST changes. Only JSON
    numbers count (booleans, strings, objects, arrays and null are skipped), so a
    bucket whose rows carry no number for a field has null avg/min/max/last and count 0.
    """

    vehicles: VehicleSelector
    bucket: Bucket
    aggs: tuple[FieldAgg, ...]
    start: float | None = None
    end: float | None = None
    tz: str = "UTC"
    limit: int = 1000
    cursor: str | None = None


class AggregateRow(msgspec.Struct):
    vehicle_id: str
    # Bucket start, epoch seconds.
    bucket: float
    # History rows in the bucket, numeric or not.
    rows: int
    # Keyed by `FieldAgg.key`, e.g. "soc:avg".
    values: dict[str, Json]


class AggregatePage(msgspec.Struct):
    rows: list[AggregateRow]
    next_cursor: str | None


class HistoryOptions(msgspec.Struct, frozen=True):
    """How history is kept: retention everywhere; partitions and compression on PostgreSQL."""

    # 0 keeps history forever.
    retention_days: int = 730
    # Hypertable chunk / native partition width; divides a day or is whole days.
    chunk_interval_hours: int = 24
    # TimescaleDB only; 0 leaves chunks uncompressed.
    compress_after_days: int = 7
    # Native partitioning only: partitions kept ready ahead of the current one.
    premake_partitions: int = 3


class MaintenanceReport(msgspec.Struct):
    # History before this time (epoch seconds) is gone; None when retention is off.
    retention_cutoff: float | None = None
    rows_deleted: int = 0
    partitions_created: list[str] = msgspec.field(default_factory=list)
    partitions_dropped: list[str] = msgspec.field(default_factory=list)
    rollup_buckets_refreshed: int = 0


class Statement(Protocol):
    """One more row to write in a twin batch's transaction, in the store's SQL dialect.

    Called with the store's placeholder ("?" or "%s"); `jsonb` asks for PostgreSQL's
    casts. An audit entry is one (`security.audit_insert` with the entry bound), so an
    operator's twin write and its entry commit together.
    """

    def __call__(self, mark: str, *, jsonb: bool = False) -> tuple[str, tuple[Any, ...]]: ...


class HistoryReader(Protocol):
    """The reads the API serves straight from the store: history, aggregates and presence."""

    async def history_page(self, query: PointQuery) -> HistoryPage:
        """Raw rows of one or more vehicles within [start, end), one page at a time."""
        ...

    async def aggregate(self, query: AggregateQuery) -> AggregatePage:
        """Per-vehicle buckets in bucket order, only buckets that hold at least one row."""
        ...

    async def presence_history(self, query: PresenceQuery) -> list[PresenceEvent]:
        """A vehicle's connection events in [start, end), in time order (or reversed)."""
        ...


class Store(HistoryReader, Protocol):
    """A durable home for twins and history; every implementation passes the contract suite."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def load_twin(self, vehicle_id: str) -> TwinState | None: ...

    async def load_twins(self, vehicle_ids: Sequence[str]) -> dict[str, TwinState]:
        """The stored twins among `vehicle_ids`, in one round trip; absent ones are left out."""
        ...

    async def write_batch(
        self,
        twins: Sequence[TwinState],
        history: Sequence[HistoryRow],
        presence: Sequence[PresenceEvent] = (),
        statements: Sequence[Statement] = (),
    ) -> None:
        """Upsert twins, append history and run `statements` in one transaction; duplicate
        history rows (same vehicle, device time and seq) are ignored."""
        ...

    async def list_twins(self, query: TwinFilter) -> list[TwinState]: ...

    async def count_twins(self, fleet: str | None = None) -> int: ...

    async def history(self, query: HistoryQuery) -> list[HistoryRow]: ...

    async def history_until(
        self, vehicle_id: str, at: float, *, cursor: str | None = None, limit: int = 1000
    ) -> HistoryPage:
        """A vehicle's rows with device time <= `at`, oldest first (ties in write order):
        replaying every page through the merge rebuilds the reported state as of `at`."""
        ...

    async def maintain(self, now: float) -> MaintenanceReport:
        """Housekeeping a timer calls every few tens of seconds: retention, partitions,
        rollups. Each call does a bounded amount of work."""
        ...

    async def info(self) -> DatabaseInfo: ...

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        ...


# -- cursors ---------------------------------------------------------------------------

_POINT, _BUCKET = "p", "b"


def _encode_cursor(parts: list[Any]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(parts)).decode().rstrip("=")


def _decode_cursor(cursor: str, kind: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = msgspec.json.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        parts = None
    if not isinstance(parts, list) or not parts or parts[0] != kind:
        raise _bad_cursor()
    return parts[1:]


def _bad_cursor() -> InvalidPayload:
    return InvalidPayload("bad_cursor", "cursor is not one this query returned; start again without it")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def point_cursor(vehicle_id: str, ts: float, row_id: int) -> str:
    """Where a page of raw rows ended: the last row's vehicle, device time and row id."""
    return _encode_cursor([_POINT, vehicle_id, ts, row_id])


def parse_point_cursor(cursor: str) -> tuple[str, float, int]:
    parts = _decode_cursor(cursor, _POINT)
    if len(parts) != 3 or not isinstance(parts[0], str) or not _is_number(parts[1]) or type(parts[2]) is not int:
        raise _bad_cursor()
    return parts[0], float(parts[1]), parts[2]


def bucket_cursor(vehicle_id: str, bucket: float) -> str:
    return _encode_cursor([_BUCKET, vehicle_id, bucket])


def parse_bucket_cursor(cursor: str) -> tuple[str, float]:
    parts = _decode_cursor(cursor, _BUCKET)
    if len(parts) != 2 or not isinstance(parts[0], str) or not _is_number(parts[1]):
        raise _bad_cursor()
    return parts[0], float(parts[1])


# -- paging over vehicles --------------------------------------------------------------

T = TypeVar("T")
K = TypeVar("K")


async def fill_page(
    vehicle_ids: Sequence[str],
    order: Order,
    resume: tuple[str, K] | None,
    limit: int,
    fetch: Callable[[str, K | None, int], Awaitable[list[T]]],
) -> tuple[list[T], bool]:
    """Fill a page vehicle by vehicle, resuming inside `resume`'s vehicle.

    `vehicle_ids` is sorted ascending; `fetch(vid, after, n)` returns at most `n` items
    of one vehicle after the key `after` (or from its start). Returns the page and
    whether more items follow it.
    """
    ids = list(vehicle_ids) if order is Order.ASC else list(reversed(vehicle_ids))
    out: list[T] = []
    for vid in ids:
        after: K | None = None
        if resume is not None:
            rvid, rkey = resume
            if (vid < rvid) if order is Order.ASC else (vid > rvid):
                continue
            if vid == rvid:
                after = rkey
        out.extend(await fetch(vid, after, limit + 1 - len(out)))
        if len(out) > limit:
            return out[:limit], True
    return out, False


async def run_maintenance(store: Store, every_s: float, clock: Callable[[], float] = time.time) -> None:
    """Call `store.maintain` every `every_s` seconds until cancelled (a hub timer task).

    A failed run is logged and tried again next time: maintenance is never urgent
    enough to stop the hub.
    """
    while True:
        await asyncio.sleep(every_s)
        try:
            report = await store.maintain(clock())
        except Exception as exc:  # the next run retries; the hub keeps serving
            log.warning("store maintenance failed", error=f"{type(exc).__name__}: {exc}")
            continue
        if report.rows_deleted or report.partitions_dropped or report.partitions_created:
            log.info(
                "store maintenance",
                rows_deleted=report.rows_deleted,
                partitions_created=report.partitions_created,
                partitions_dropped=report.partitions_dropped,
            )


def retention_cutoff(now: float, retention_days: int, align_s: int = 86_400) -> float | None:
    """Start of the oldest kept period: history before it goes, whole periods at a time.

    Whole periods (UTC days by default, a partition's width in PostgreSQL) so that
    dropping partitions and deleting rows remove exactly the same rows.
    """
    if retention_days <= 0:
        return None
    return float((int(now) - retention_days * 86_400) // align_s * align_s)


def project(data: dict[str, Json], fields: tuple[str, ...] | None) -> dict[str, Json]:
    """Keep only the requested (dotted) field paths of a history row's data."""
    if fields is None:
        return data
    out: dict[str, Json] = {}
    for name in fields:
        found, value = get_path(data, tuple(name.split(".")))
        if found:
            out[name] = value
    return out
