"""PostgreSQL store benchmark: sustained history writes, and bucketing one vehicle-day.

    .venv/bin/python bench/store_write.py [--url postgresql://...] [--rows 1000000 | --big]

1. Sustained writes: batches of --batch rows from --vehicles vehicles through
   `PostgresStore.write_batch`, as the twin service sends them (history rows plus one
   twin upsert per vehicle in the batch), and again history only.
2. Fills the history table to --rows rows (other vehicles, the same days; written with
   INSERT ... SELECT, not through the store, to save time), writes one vehicle's day at
   1 Hz (86,400 points) through the store, and times 1-minute buckets of that day:
   before maintenance (every minute dirty: computed from raw rows) and after
   (read from the rollup).

Runs in a schema of its own, dropped at the end. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import time
import uuid
from urllib.parse import quote

import psycopg

from kernel import PostgresDatabase
from twin import (
    PATH_SEP,
    AggregateQuery,
    Bucket,
    HistoryRow,
    PostgresStore,
    ReportedEntry,
    TwinState,
    VehicleSelector,
    flatten,
    parse_aggs,
)

DAY_START = 1_735_689_600.0  # 2025-01-01T00:00:00Z
AGGS = parse_aggs("soc:avg,speed:max,speed:avg,odometer_km:last,soc:count")


def _data(k: int, v: int) -> dict:
    return {
        "gps": {"lat": 19.4 + (k % 1000) * 1e-5, "lon": -99.1 - v * 1e-4},
        "speed": round(30 + 20 * math.sin(k / 60), 1),
        "heading": k % 360,
        "soc": round(90 - (k % 5000) / 100, 2),
        "charging": False,
        "odometer_km": round(10_000 + k * 0.01, 3),
        "ignition": True,
    }


def _leaves(data: dict) -> list[tuple[str, object]]:
    return [(PATH_SEP.join(path), value) for path, value in flatten(data)]


def _batches(count: int, batch: int, vehicles: int, twins: bool) -> list[tuple[list[TwinState], list[HistoryRow]]]:
    """The batches the twin service would send: rows, and each touched vehicle's twin once."""
    out, k = [], 0
    for _ in range(count):
        rows, touched = [], {}
        for _ in range(batch):
            v = k % vehicles
            ts = DAY_START + 86_400 + k // vehicles
            rows.append(HistoryRow(f"veh-{v}", ts, ts, k, _data(k, v)))
            if twins:
                reported = {p: ReportedEntry(value, ts) for p, value in _leaves(rows[-1].data)}
                touched[v] = TwinState(f"veh-{v}", DAY_START, ts, version=k, reported=reported)
            k += 1
        out.append((list(touched.values()), rows))
    return out


async def sustained(url: str, batches: int, batch: int, vehicles: int, twins: bool) -> dict:
    work = _batches(batches, batch, vehicles, twins)
    async with PostgresDatabase(url, pool_min_size=1, pool_max_size=2) as db, PostgresStore(db) as store:
        # Warm-up: partitions, pool, staging tables.
        await store.write_batch([], [HistoryRow("warm", DAY_START + 86_400, DAY_START, 0, {"a": 1})])
        started = time.perf_counter()
        for twin_batch, rows in work:
            await store.write_batch(twin_batch, rows)
        elapsed = time.perf_counter() - started
    total = batches * batch
    return {
        "rows": total,
        "twins_per_batch": len(work[0][0]),
        "seconds": round(elapsed, 3),
        "rows_per_s": round(total / elapsed),
    }


def fill(url: str, rows: int) -> float:
    """Other vehicles' history around the measured day, straight into the table."""
    started = time.perf_counter()
    vehicles = max(1, -(-rows // 86_400))  # at most a day of 1 Hz rows each, so all fit in one day
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO history (vehicle_id, ts, received_at, seq, data)
            SELECT 'fill-' || (g %% %(v)s), ts, ts, g,
                   jsonb_build_object('gps', jsonb_build_object('lat', 19.4 + (g %% 1000) * 1e-5, 'lon', -99.1),
                                      'speed', (g %% 90), 'soc', 90 - (g %% 5000) / 100.0, 'heading', g %% 360,
                                      'charging', false, 'odometer_km', 10000 + g * 0.01, 'ignition', true)
            FROM generate_series(0, %(n)s - 1) AS g,
                 LATERAL (SELECT to_timestamp(%(day)s + (g / %(v)s)) AS ts) t
            """,
            {"n": rows, "v": vehicles, "day": DAY_START},
        )
        conn.execute("ANALYZE history")
    return time.perf_counter() - started


async def vehicle_day(url: str, rows: int, runs: int) -> dict:
    async with PostgresDatabase(url, pool_min_size=1, pool_max_size=2) as db, PostgresStore(db) as store:
        await store.write_batch([], [HistoryRow("warm", DAY_START, DAY_START, 0, {"a": 1})])
        fill_s = fill(url, rows)
        day = [HistoryRow("veh-day", DAY_START + s, DAY_START + s, s, _data(s, 0)) for s in range(86_400)]
        started = time.perf_counter()
        for i in range(0, len(day), 1000):
            await store.write_batch([], day[i : i + 1000])
        write_s = time.perf_counter() - started
        query = AggregateQuery(
            VehicleSelector.one("veh-day"), Bucket.MINUTE, AGGS, start=DAY_START, end=DAY_START + 86_400, limit=2000
        )

        async def timed() -> tuple[float, int]:
            times, n = [], 0
            for _ in range(runs):
                t = time.perf_counter()
                page = await store.aggregate(query)
                times.append(time.perf_counter() - t)
                n = len(page.rows)
            return statistics.median(times) * 1000, n

        raw_ms, buckets = await timed()
        started = time.perf_counter()
        refreshed = 0
        while True:
            report = await store.maintain(DAY_START + 3 * 86_400)
            refreshed += report.rollup_buckets_refreshed
            if report.rollup_buckets_refreshed == 0:
                break
        refresh_s = time.perf_counter() - started
        rollup_ms, buckets_after = await timed()
        with psycopg.connect(url) as conn:
            total = conn.execute("SELECT count(*) FROM history").fetchone()[0]
    assert buckets == buckets_after == 1440
    return {
        "table_rows": total,
        "fill_seconds": round(fill_s, 1),
        "day_write_seconds": round(write_s, 2),
        "bucket_1m_raw_ms": round(raw_ms, 1),
        "rollup_refresh_seconds": round(refresh_s, 2),
        "rollup_minutes_refreshed": refreshed,
        "bucket_1m_rollup_ms": round(rollup_ms, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the table for the bucketing test")
    parser.add_argument("--big", action="store_true", help="10 million rows")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    rows = 10_000_000 if args.big else args.rows
    result: dict = {"batch": args.batch, "vehicles": args.vehicles}
    schemas = []

    def fresh() -> str:
        name = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
            result.setdefault("server", conn.execute("SHOW server_version").fetchone()[0])
        schemas.append(name)
        sep = "&" if "?" in args.url else "?"
        return f"{args.url}{sep}options={quote(f'-c search_path={name},public')}"

    try:
        result["write_with_twins"] = await sustained(fresh(), args.batches, args.batch, args.vehicles, True)
        result["write_history_only"] = await sustained(fresh(), args.batches, args.batch, args.vehicles, False)
        result["vehicle_day"] = await vehicle_day(fresh(), rows, args.runs)
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            for name in schemas:
                conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
