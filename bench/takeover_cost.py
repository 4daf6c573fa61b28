"""`python -m bench.takeover_cost`: what a worker reads from PostgreSQL when it takes one partition over.

Fills a fresh database with a fleet (twins, a share connected, open alerts and rule
windows, open commands), then times the takeover reads of one partition of 64 both ways:
the whole fleet's rows filtered in Python (the reads with no partition given, as a worker
did before they took one) and the partition's rows chosen in SQL. Same process, same
database, alternated, median of `--repeat`:

    python -m bench.takeover_cost --vehicles 20000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench import procs
from commands import Command, CommandState, SqlCommandStore, Transition
from kernel import PostgresDatabase, VehiclePartitions
from rules import Alert, AlertState, PendingTimer, RulesWrite, SqlRulesStore, TimerKind
from twin import PostgresStore, ReportedEntry, TwinFilter, TwinState

PARTITIONS = 64


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.takeover_cost", description=__doc__)
    parser.add_argument("--vehicles", type=int, default=20_000, help="fleet size (default 20000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds per way (default 5)")
    return parser


def _twin(vid: str, connected: bool) -> TwinState:
    reported = {"soc": ReportedEntry(50, 1.5), "speed": ReportedEntry(42, 1.5), "odometer_km": ReportedEntry(1234, 1.5)}
    state = TwinState(
        vehicle_id=vid,
        created_at=1.0,
        updated_at=2.0,
        fleet="default",
        version=3,
        tags={"depot": "north"},
        reported=reported,
    )
    state.connection.connected = connected
    state.connection.since = 1.0 if connected else None
    return state


def _alert(n: int, vid: str) -> Alert:
    return Alert(
        id=f"a{n}",
        rule="hot",
        vehicle_id=vid,
        fleet="default",
        severity="critical",
        state=AlertState.ACTIVE,
        message="m",
        values={"battery.temp_c": 70},
        since=100.0,
        raised_at=100.0,
        updated_at=100.0,
    )


def _command(n: int, vid: str) -> Command:
    return Command(
        id=f"c{n}",
        vehicle_id=vid,
        name="unlock",
        state=CommandState.QUEUED,
        created_at=100.0 + n,
        expires_at=1e10,
        updated_at=100.0,
        args={},
        history=[Transition(CommandState.QUEUED, 100.0)],
    )


async def _fill(twins: PostgresStore, rules: SqlRulesStore, commands: SqlCommandStore, vehicles: int) -> None:
    vids = [f"veh-{n:07d}" for n in range(vehicles)]
    for start in range(0, vehicles, 2000):
        # Two in three vehicles connected; one in ten with an open alert and a window; one in twenty a command.
        chunk = vids[start : start + 2000]
        await twins.write_batch([_twin(v, n % 3 > 0) for n, v in enumerate(chunk, start)], [])
        alerts = [_alert(n, v) for n, v in enumerate(chunk, start) if n % 10 == 0]
        timers = [
            PendingTimer("slow", v, TimerKind.RAISE, 90.0, 1e10, {}) for n, v in enumerate(chunk, start) if n % 10 == 0
        ]
        await rules.write(RulesWrite(alerts=alerts, timers=timers))
        await commands.write([_command(n, v) for n, v in enumerate(chunk, start) if n % 20 == 0])


async def _connected(twins: PostgresStore, chosen: VehiclePartitions | None, vehicle: Callable[[str], bool]) -> int:
    found: list[str] = []
    after: str | None = None
    while True:
        page = await twins.list_twins(TwinFilter(connected=True, after=after, limit=1000, vehicles=chosen))
        found += [t.vehicle_id for t in page if vehicle(t.vehicle_id)]
        if len(page) < 1000:
            return len(found)
        after = page[-1].vehicle_id


async def _takeover(
    twins: PostgresStore, rules: SqlRulesStore, commands: SqlCommandStore, part: VehiclePartitions, in_sql: bool
) -> tuple[float, dict[str, int]]:
    chosen = part if in_sql else None
    started = time.perf_counter()
    counts = {
        "open_alerts": len([a for a in await rules.open_alerts(chosen) if part(a.vehicle_id)]),
        "rule_windows": len([t for t in await rules.pending_timers(chosen) if part(t.vehicle_id)]),
        "open_commands": len([c for c in await commands.open_commands(chosen) if part(c.vehicle_id)]),
        "connected_twins": await _connected(twins, chosen, part),
    }
    return time.perf_counter() - started, counts


async def measure(url: str, vehicles: int, repeat: int) -> dict[str, Any]:
    async with contextlib.AsyncExitStack() as stack:
        db = await stack.enter_async_context(PostgresDatabase(url, pool_min_size=1, pool_max_size=4))
        twins = await stack.enter_async_context(PostgresStore(db))
        rules = await stack.enter_async_context(SqlRulesStore(db))
        commands = await stack.enter_async_context(SqlCommandStore(db))
        await _fill(twins, rules, commands, vehicles)
        times: dict[bool, list[float]] = {False: [], True: []}
        counts: dict[bool, dict[str, int]] = {}
        part = VehiclePartitions(frozenset({7}), PARTITIONS)
        await _takeover(twins, rules, commands, part, True)  # warms the caches both ways use
        for _ in range(repeat):
            for in_sql in (False, True):
                took, counts[in_sql] = await _takeover(twins, rules, commands, part, in_sql)
                times[in_sql].append(took)
        if counts[False] != counts[True]:
            raise procs.BenchError(f"the two ways disagree: {counts}")
    return {
        "vehicles": vehicles,
        "partitions": PARTITIONS,
        "one_partition": counts[True],
        "whole_fleet_filtered_in_python_ms": round(statistics.median(times[False]) * 1000, 1),
        "partition_chosen_in_sql_ms": round(statistics.median(times[True]) * 1000, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    why_not = procs.postgres_available()
    if why_not:
        raise procs.BenchError(why_not)
    with procs.postgres_database("takeover") as url:
        out = asyncio.run(measure(url, args.vehicles, args.repeat))
    out["load_average"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
