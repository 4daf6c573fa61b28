"""Bucketed aggregates of history: the reference semantics every store reproduces.

Numbers are summed as exact decimals of their shortest JSON text (what msgspec writes
and PostgreSQL's numeric keeps), and averages are divided once at the end, so every
store gives the same bits, not just nearly the same value.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Context, Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kernel import InvalidPayload
from twin.model import Json
from twin.paths import get_path
from twin.stores.protocol import Agg, AggregateRow, Bucket, FieldAgg

BUCKET_SECONDS = {Bucket.MINUTE: 60, Bucket.FIVE_MINUTES: 300, Bucket.HOUR: 3600}

# Wide enough that a year of 1 Hz values with 17 significant digits sums exactly.
_EXACT = Context(prec=80)
# A day bucket's next start lies 23 to 25 hours later; 36 hours is safely inside the next day.
_INTO_NEXT_DAY = timedelta(hours=36)


def time_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidPayload("bad_tz", f"'tz' must be an IANA time zone such as Europe/Paris, got {name!r}") from None


def parse_aggs(spec: str) -> tuple[FieldAgg, ...]:
    """`soc:avg,speed:max,soc:min` to field aggregates, in the order given, without repeats."""
    out: list[FieldAgg] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, sep, fn = part.rpartition(":")
        try:
            agg = Agg(fn.strip().lower())
        except ValueError:
            agg = None
        if not sep or not name.strip() or agg is None:
            allowed = "|".join(a.value for a in Agg)
            raise InvalidPayload("bad_agg", f"'agg' items must be field:{allowed}, got {part!r}")
        item = FieldAgg(name.strip(), agg)
        if item not in out:
            out.append(item)
    if not out:
        raise InvalidPayload("bad_agg", "'agg' needs at least one field:function, e.g. soc:avg,speed:max")
    return tuple(out)


def bucket_start(ts: float, bucket: Bucket, tz: ZoneInfo) -> float:
    if bucket is not Bucket.DAY:
        width = BUCKET_SECONDS[bucket]
        return float(math.floor(ts / width) * width)
    local = datetime.fromtimestamp(ts, tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def next_bucket(start: float, bucket: Bucket, tz: ZoneInfo) -> float:
    if bucket is not Bucket.DAY:
        return start + BUCKET_SECONDS[bucket]
    return bucket_start(start + _INTO_NEXT_DAY.total_seconds(), bucket, tz)


def as_decimal(value: Json) -> Decimal | None:
    """A JSON number as the exact decimal of its shortest text; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return Decimal(value) if isinstance(value, int) else Decimal(repr(value))


def json_number(value: Decimal) -> int | float:
    """Integral decimals (written without a fraction) as int, the rest as float."""
    exponent = value.as_tuple().exponent
    return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)


@dataclass(slots=True)
class FieldStats:
    """What a bucket knows about one field; mergeable, so minutes roll up into hours."""

    n: int = 0
    total: Decimal = Decimal(0)
    lo: Decimal | None = None
    hi: Decimal | None = None
    # (device time, row id) of the latest numeric value: ties go to the later write.
    last_key: tuple[float, int] | None = None
    last: Decimal | None = None

    def add(self, value: Decimal, ts: float, row_id: int) -> None:
        self.n += 1
        self.total = _EXACT.add(self.total, value)
        self.lo = value if self.lo is None or value < self.lo else self.lo
        self.hi = value if self.hi is None or value > self.hi else self.hi
        if self.last_key is None or (ts, row_id) > self.last_key:
            self.last_key, self.last = (ts, row_id), value

    def result(self, agg: Agg) -> Json:
        return finish(agg, self.n, self.total, self.lo, self.hi, self.last)


def finish(agg: Agg, n: int, total: Decimal, lo: Decimal | None, hi: Decimal | None, last: Decimal | None) -> Json:
    """The value of one function from a field's folded stats."""
    match agg:
        case Agg.COUNT:
            return n
        case Agg.AVG:
            return float(_EXACT.divide(total, n)) if n else None
        case Agg.MIN:
            return json_number(lo) if lo is not None else None
        case Agg.MAX:
            return json_number(hi) if hi is not None else None
        case Agg.LAST:
            return json_number(last) if last is not None else None


@functools.cache
def output_plan(aggs: tuple[FieldAgg, ...]) -> tuple[tuple[str, str, Agg], ...]:
    """(output key, field, function) per requested aggregate, computed once per query shape."""
    return tuple((a.key, a.field, a.agg) for a in aggs)


def field_path(name: str) -> tuple[str, ...]:
    return tuple(name.split("."))


@dataclass(slots=True)
class _Open:
    start: float
    rows: int = 0
    stats: dict[str, FieldStats] = field(default_factory=dict)


class Bucketizer:
    """Folds one vehicle's rows, fed in (device time, row id) order, into buckets."""

    def __init__(self, vehicle_id: str, bucket: Bucket, aggs: tuple[FieldAgg, ...], tz: ZoneInfo) -> None:
        self.vehicle_id = vehicle_id
        self.bucket = bucket
        self.aggs = aggs
        self.tz = tz
        self._fields = {a.field: field_path(a.field) for a in aggs}
        self._open: _Open | None = None
        self._end = -math.inf

    def feed(self, ts: float, row_id: int, data: dict[str, Json]) -> AggregateRow | None:
        """Add a row; returns the previous bucket when this row starts a new one."""
        done = None
        if self._open is None or ts >= self._end:
            done = self.finish()
            start = bucket_start(ts, self.bucket, self.tz)
            self._open = _Open(start, stats={name: FieldStats() for name in self._fields})
            self._end = next_bucket(start, self.bucket, self.tz)
        current = self._open
        current.rows += 1
        for name, path in self._fields.items():
            found, value = get_path(data, path)
            number = as_decimal(value) if found else None
            if number is not None:
                current.stats[name].add(number, ts, row_id)
        return done

    def finish(self) -> AggregateRow | None:
        current, self._open = self._open, None
        if current is None:
            return None
        return make_row(self.vehicle_id, current.start, current.rows, current.stats, self.aggs)


def make_row(
    vehicle_id: str, start: float, rows: int, stats: dict[str, FieldStats], aggs: tuple[FieldAgg, ...]
) -> AggregateRow:
    empty = FieldStats()
    values = {key: stats.get(name, empty).result(agg) for key, name, agg in output_plan(aggs)}
    return AggregateRow(vehicle_id=vehicle_id, bucket=start, rows=rows, values=values)
