"""How long a daily fleet report takes: N vehicles x one day of history, folded, and read from SQLite.

    .venv/bin/python -m bench.report_gen [--vehicles 20000] [--interval 60] [--read-vehicles 500]

Two measures. The fold (the report's computation) runs over `--vehicles` vehicles x one
day of in-memory rows at one row per `--interval` seconds. The full report (history
read from a SQLite store page by page, plus the fold) runs over `--read-vehicles`
vehicles, whose rows are written first; its time per row is scaled to `--vehicles`.
Times are CPU seconds of this process (the store's reads run in its threads). Prints
numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import random
import tempfile
import time
from pathlib import Path

from kernel import open_database
from reports import DayFold, ReportService
from twin import HistoryRow, TwinState, twin_store

DAY = dt.date(2026, 12, 1)
START = dt.datetime.combine(DAY, dt.time(), dt.UTC).timestamp()


def day_rows(vehicle: int, interval: float, rng: random.Random) -> list[tuple[float, dict[str, object]]]:
    """A vehicle's day: parked at night, a few trips, as the simulator reports."""
    rows = []
    lat, lon, odo, soc, speed = 19.4 + rng.uniform(-0.1, 0.1), -99.13, 1000.0 + vehicle, 80.0, 0.0
    for i in range(int(86_400 / interval)):
        ts = START + i * interval + rng.uniform(0, 1)
        hour = (ts - START) / 3600
        driving = 7 <= hour < 9 or 17 <= hour < 19 or (12 <= hour < 13 and vehicle % 2 == 0)
        speed = max(0.0, min(90.0, speed + rng.uniform(-10, 10))) if driving else 0.0
        step = speed * interval / 3600
        lat += step / 111.0 * math.cos(i / 50)
        lon += step / 111.0 * math.sin(i / 50)
        odo += step
        soc = max(5.0, soc - step * 0.15)
        rows.append(
            (
                ts,
                {
                    "gps": {"lat": round(lat, 6), "lon": round(lon, 6)},
                    "speed": round(speed, 1),
                    "ignition": driving,
                    "soc": round(soc, 1),
                    "charging": False,
                    "meters": {"odometer_km": round(odo, 3)},
                },
            )
        )
    return rows


def fold_time(vehicles: int, interval: float) -> tuple[float, int]:
    rng = random.Random(1)
    total, rows_count = 0.0, 0
    for v in range(vehicles):
        rows = day_rows(v, interval, rng)
        rows_count += len(rows)
        started = time.process_time()
        fold = DayFold(f"veh-{v:05d}", "default", DAY.isoformat(), moving_kmh=3, max_gap_s=300)
        for ts, data in rows:
            fold.feed(ts, data)
        fold.finish()
        total += time.process_time() - started
    return total, rows_count


async def full_report(vehicles: int, interval: float, tmp: Path) -> tuple[float, float, int]:
    rng = random.Random(2)
    async with open_database(f"sqlite:///{tmp / 'report.db'}") as db, twin_store(db) as store:
        twins, history = [], []
        for v in range(vehicles):
            vid = f"veh-{v:05d}"
            twins.append(TwinState(vehicle_id=vid, created_at=START, updated_at=START))
            history += [HistoryRow(vid, ts, ts, None, data) for ts, data in day_rows(v, interval, rng)]
        for i in range(0, len(history), 20_000):
            await store.write_batch(twins if i == 0 else [], history[i : i + 20_000], [])
        service = ReportService(store, store)
        wall = time.perf_counter()
        cpu = time.process_time()
        report = await service.daily(fleet="default", first_day=DAY)
        cpu = time.process_time() - cpu
        wall = time.perf_counter() - wall
        assert len(report.vehicles) == vehicles
        return cpu, wall, len(history)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vehicles", type=int, default=20_000)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--read-vehicles", type=int, default=500)
    args = parser.parse_args()
    fold_s, rows = fold_time(args.vehicles, args.interval)
    print(f"fold: {args.vehicles} vehicles x 1 day, {rows} rows: {fold_s:.2f} s CPU ({fold_s / rows * 1e6:.2f} us/row)")
    with tempfile.TemporaryDirectory() as tmp:
        cpu, wall, read_rows = await full_report(args.read_vehicles, args.interval, Path(tmp))
    scale = args.vehicles / args.read_vehicles
    print(
        f"report from SQLite: {args.read_vehicles} vehicles, {read_rows} rows: {cpu:.2f} s CPU, {wall:.2f} s wall "
        f"({cpu / read_rows * 1e6:.2f} us/row); scaled to {args.vehicles} vehicles: ~{cpu * scale:.0f} s CPU"
    )


if __name__ == "__main__":
    asyncio.run(main())
