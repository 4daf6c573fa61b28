"""History read benchmark: the twin store's raw-history and aggregate queries on SQLite and PostgreSQL.

    .venv/bin/python bench/history_reads.py [--url postgresql://...] [--rows 20000] [--runs 3]

One vehicle's history (--rows rows, 2 s apart) is written through the store, then
each query is repeated and timed:

- `page100`: the API's vehicle history page (last 100 rows, 3 fields, newest first);
- `walk`: every row, 1,000 per page, following the cursor (a CSV export's reads);
- `history1000`: one unpaged read of 1,000 rows (what backtests read);
- `aggregate_day_1m`: 1-minute buckets of avg and max over the day.

For each: the fastest wall time, and the hub process's CPU time per query (all its
threads: SQLite reads run on reader threads), which is steadier than wall time on a
busy machine. PostgreSQL runs in a schema of its own, dropped at the end. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import psycopg

from kernel import PostgresDatabase, SqliteDatabase
from twin import (
    AggregateQuery,
    Bucket,
    HistoryQuery,
    HistoryRow,
    Order,
    PointQuery,
    Store,
    TwinState,
    VehicleSelector,
    parse_aggs,
    twin_store,
)

T0 = 1_700_006_400.0
VEHICLE = "veh-reads"


async def _fill(store: Store, rows: int) -> None:
    batch = []
    for i in range(rows):
        data = {"soc": 50 + (i % 50) * 0.5, "speed": i % 90, "gps": {"lat": 19.4, "lon": -99.1}}
        batch.append(HistoryRow(VEHICLE, T0 + i * 2.0, T0 + i * 2.0, i, data))
        if len(batch) == 1000 or i == rows - 1:
            await store.write_batch([TwinState(VEHICLE, T0, T0)], batch)
            batch = []


async def _time(query: Callable[[], Awaitable[object]], repeat: int) -> dict[str, float]:
    walls = []
    cpu = time.process_time()
    for _ in range(repeat):
        start = time.perf_counter()
        await query()
        walls.append(time.perf_counter() - start)
    return {"best_ms": round(min(walls) * 1000, 3), "cpu_ms": round((time.process_time() - cpu) / repeat * 1000, 3)}


async def _measure(store: Store, rows: int, repeat: int) -> dict[str, dict[str, float]]:
    one = VehicleSelector.one(VEHICLE)

    async def page100() -> None:
        await store.history_page(PointQuery(one, fields=("soc", "speed", "gps"), order=Order.DESC, limit=100))

    async def walk() -> None:
        cursor, seen = None, 0
        while True:
            page = await store.history_page(PointQuery(one, limit=1000, cursor=cursor))
            seen += len(page.rows)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        if seen != rows:
            raise RuntimeError(f"the walk read {seen} rows of {rows}")

    async def history1000() -> None:
        await store.history(HistoryQuery(VEHICLE, limit=1000))

    async def aggregate() -> None:
        aggs = parse_aggs("soc:avg,speed:max")
        await store.aggregate(AggregateQuery(one, Bucket.MINUTE, aggs, start=T0, end=T0 + 86_400, limit=2000))

    await _fill(store, rows)
    return {
        "page100": await _time(page100, 20 * repeat),
        "walk": await _time(walk, repeat),
        "history1000": await _time(history1000, 5 * repeat),
        "aggregate_day_1m": await _time(aggregate, repeat),
    }


async def sqlite(rows: int, repeat: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        async with SqliteDatabase(f"sqlite:///{Path(tmp) / 'reads.db'}") as db, twin_store(db) as store:
            return await _measure(store, rows, repeat)


async def postgres(url: str, rows: int, repeat: int) -> dict[str, dict[str, float]]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    try:
        scoped = f"{url}{sep}options={quote(f'-c search_path={schema},public')}"
        async with (
            PostgresDatabase(scoped, pool_min_size=1, pool_max_size=2, timeseries="native") as db,
            twin_store(db) as store,
        ):
            return await _measure(store, rows, repeat)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=10, help="repetitions of the slowest queries (more for fast ones)")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    result: dict[str, object] = {"rows": args.rows, "sqlite": await sqlite(args.rows, args.runs)}
    if not args.no_postgres:
        result["postgresql"] = await postgres(args.url, args.rows, args.runs)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
