"""`python -m bench.owner_reads`: what a worker reads when others change its vehicles, and for maintenance.

Fills a fresh database like `bench.takeover_cost` (twins, open alerts and rule windows,
open commands) plus one maintenance interval per vehicle, then times, median of `--repeat`,
alternated, same process and database:

- the rebuild of `--changed` vehicles whose alerts or commands another node changed: the
  whole fleet's open alerts, windows and open commands filtered in Python plus one twin
  read per vehicle (as before), against those vehicles' rows chosen by id in SQL;
- a maintenance check's interval read: every interval (as before) against the intervals of
  the partitions one of `--workers` workers holds;
- the fleet-wide due list on an API node, which now reads every twin and interval from the
  database a page at a time (before, it answered from memory with stale meters).

    python -m bench.owner_reads --vehicles 20000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bench import procs
from bench.takeover_cost import PARTITIONS, _fill
from commands import SqlCommandStore
from kernel import PostgresDatabase, VehicleIds, VehiclePartitions, VehicleSet
from maintenance import Interval, MaintenanceService, Schedule, ScheduleBody, SqlMaintenanceStore
from rules import SqlRulesStore
from twin import PostgresStore, TwinFilter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.owner_reads", description=__doc__)
    parser.add_argument("--vehicles", type=int, default=20_000, help="fleet size (default 20000)")
    parser.add_argument("--changed", type=int, default=10, help="vehicles changed elsewhere at once (default 10)")
    parser.add_argument("--workers", type=int, default=2, help="workers sharing the partitions (default 2)")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds per way (default 5)")
    return parser


async def _rebuild(
    twins: PostgresStore, rules: SqlRulesStore, commands: SqlCommandStore, ids: frozenset[str], by_id: bool
) -> int:
    chosen: VehicleSet | None = VehicleIds(ids) if by_id else None
    found = len([a for a in await rules.open_alerts(chosen) if a.vehicle_id in ids])
    found += len([t for t in await rules.pending_timers(chosen) if t.vehicle_id in ids])
    found += len([c for c in await commands.open_commands(chosen) if c.vehicle_id in ids])
    if by_id:
        found += len(await twins.list_twins(TwinFilter(connected=True, limit=len(ids), vehicles=VehicleIds(ids))))
    else:
        for vid in sorted(ids):
            state = await twins.load_twin(vid)
            found += state is not None and state.connection.connected
    return found


async def _timed(way: Callable[[], Awaitable[int]]) -> tuple[float, int]:
    started = time.perf_counter()
    found = await way()
    return time.perf_counter() - started, found


async def _both(repeat: int, before: Callable[[], Awaitable[int]], after: Callable[[], Awaitable[int]]) -> list[float]:
    await after()  # warms the caches both ways use
    times: dict[bool, list[float]] = {False: [], True: []}
    found: dict[bool, int] = {}
    for _ in range(repeat):
        for now, way in ((False, before), (True, after)):
            took, found[now] = await _timed(way)
            times[now].append(took)
    if found[False] != found[True]:
        raise procs.BenchError(f"the two ways disagree: {found}")
    return [round(statistics.median(times[w]) * 1000, 1) for w in (False, True)]


async def measure(url: str, vehicles: int, changed: int, workers: int, repeat: int) -> dict[str, Any]:
    async with contextlib.AsyncExitStack() as stack:
        db = await stack.enter_async_context(PostgresDatabase(url, pool_min_size=1, pool_max_size=4))
        twins = await stack.enter_async_context(PostgresStore(db))
        rules = await stack.enter_async_context(SqlRulesStore(db))
        commands = await stack.enter_async_context(SqlCommandStore(db))
        maintenance = await stack.enter_async_context(SqlMaintenanceStore(db))
        await _fill(twins, rules, commands, vehicles)
        await maintenance.put_schedule(Schedule("oil", ScheduleBody(name="Oil", every_km=15000.0), 1.0, 1.0))
        vids = [f"veh-{n:07d}" for n in range(vehicles)]
        for start in range(0, vehicles, 2000):
            await maintenance.put_intervals(
                [Interval("oil", v, "default", 1.0, 1000.0) for v in vids[start : start + 2000]]
            )
        # Vehicles with an alert, a window and a command (every twentieth), spread over the fleet.
        ids = frozenset(vids[n] for n in range(0, vehicles, max(20, vehicles // changed // 20 * 20)))
        ids = frozenset(sorted(ids)[:changed])
        rebuild = await _both(
            repeat,
            lambda: _rebuild(twins, rules, commands, ids, False),
            lambda: _rebuild(twins, rules, commands, ids, True),
        )
        held = VehiclePartitions(frozenset(range(0, PARTITIONS, workers)), PARTITIONS)

        async def all_intervals() -> int:
            return len([i for i in await maintenance.intervals() if held(i.vehicle_id)])

        async def held_intervals() -> int:
            return len(await maintenance.intervals(held))

        intervals = await _both(repeat, all_intervals, held_intervals)
        service = MaintenanceService(maintenance, twins)
        service.owns = lambda vid: False
        service.held = lambda: VehiclePartitions(frozenset(), PARTITIONS)  # an API node
        async with service:
            listed: list[float] = []
            for _ in range(repeat):
                took, rows = await _timed(lambda: _count(service.standing_now()))
                listed.append(took)
            in_memory, _ = await _timed(lambda: _count(_now(service.standing())))
    return {
        "vehicles": vehicles,
        "partitions": PARTITIONS,
        "changed_vehicles": len(ids),
        "rebuild_whole_fleet_filtered_in_python_ms": rebuild[0],
        "rebuild_by_id_in_sql_ms": rebuild[1],
        "workers": workers,
        "check_reads_every_interval_ms": intervals[0],
        "check_reads_held_intervals_ms": intervals[1],
        "api_node_due_list_rows": rows,
        "api_node_due_list_from_database_ms": round(statistics.median(listed) * 1000, 1),
        "due_list_from_memory_ms": round(in_memory * 1000, 1),
    }


async def _count(rows: Awaitable[list[Any]]) -> int:
    return len(await rows)


async def _now(rows: list[Any]) -> list[Any]:
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    why_not = procs.postgres_available()
    if why_not:
        raise procs.BenchError(why_not)
    with procs.postgres_database("owner_reads") as url:
        out = asyncio.run(measure(url, args.vehicles, args.changed, args.workers, args.repeat))
    out["load_average"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
