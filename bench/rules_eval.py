"""What rule evaluation adds to ingest: 100 rules, 20,000 twins, telemetry through the real pipeline.

    .venv/bin/python -m bench.rules_eval [--vehicles 20000] [--rules 100] [--messages 100000]
                                         [--store memory|sqlite|postgresql] [--mode drift|churn]
                                         [--database postgresql://127.0.0.1:5432/test]

Runs the twin service's consumer over the same telemetry twice, once without and once
with the rules engine registered as an observer, and reports seconds per message and
the difference. The in-memory twin store is the default because it makes ingest as
cheap as it gets, so the share rules add is the largest it can be; `--store sqlite`
and `--store postgresql` measure against real commits, with the rules engine on the
same backend's rules store (PostgreSQL: a schema of its own in `--database`, dropped
afterwards). Also times `Evaluator.observe` alone. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import msgspec
import psycopg

from kernel import open_database
from rules import Circle, MemoryRulesStore, RuleDefinition, RulesEngine, RulesStore, Severity, rules_store
from twin import Inbound, MemoryStore, MessageKind, Store, TwinService, TwinUpdate, twin_store

_encode = msgspec.json.Encoder().encode

# Templates over the fields the simulator reports; each is instantiated with varying thresholds.
_TEMPLATES = [
    "soc < {a} and not charging",
    "speed > {b}",
    "battery.temp_c > {c} or (battery.temp_c > {c2} and rate(battery.temp_c) > 0.5)",
    "tyres.front_left.kpa < {d} and delta(tyres.front_left.kpa) < 0",
    'no_data_for("gps") > {e}m',
    'speed > {b} and inside("zone-{z}")',
    'left("zone-{z}") and speed > 5',
    "odometer_km > {f} and changed(ignition)",
    "abs(heading - 180) < {g} and speed > {b2}",
    "doors.locked == false and speed > 10",
]


def make_rules(count: int, rng: random.Random) -> list[RuleDefinition]:
    rules = []
    for i in range(count):
        when = _TEMPLATES[i % len(_TEMPLATES)].format(
            a=rng.randint(5, 20),
            b=rng.randint(90, 140),
            b2=rng.randint(30, 60),
            c=rng.randint(55, 70),
            c2=rng.randint(45, 55),
            d=rng.randint(150, 190),
            e=rng.randint(2, 30),
            f=rng.randint(10_000, 90_000),
            g=rng.randint(5, 30),
            z=i % 5,
        )
        rules.append(
            RuleDefinition(name=f"rule-{i:03d}", when=when, severity=Severity.WARNING, message=f"rule {i} {{speed}}")
        )
    return rules


class Telemetry:
    """Messages of a fleet. `churn`: every field takes a new value in every message (the worst
    case for rules, which all re-evaluate). `drift`: position, speed and odometer change with
    every message, the battery and tyres slowly, the rest rarely, as real vehicles report."""

    def __init__(self, vehicles: int, rng: random.Random, mode: str) -> None:
        self.rng = rng
        self.mode = mode
        self.state = [
            {
                "lat": 19.4 + rng.uniform(-0.1, 0.1),
                "lon": -99.13 + rng.uniform(-0.1, 0.1),
                "speed": rng.uniform(0, 60),
                "heading": rng.uniform(0, 359),
                "soc": rng.uniform(30, 90),
                "odometer_km": rng.uniform(1000, 50000),
                "temp_c": rng.uniform(25, 35),
                "kpa": rng.uniform(225, 240),
            }
            for _ in range(vehicles)
        ]

    def message(self, index: int, seq: int, ts: float) -> bytes:
        rng, v = self.rng, self.state[index]
        if self.mode == "churn":
            v.update(
                speed=rng.uniform(0, 80),
                heading=rng.uniform(0, 359),
                soc=rng.uniform(20, 90),
                temp_c=rng.uniform(25, 40),
                kpa=rng.uniform(220, 240),
                odometer_km=rng.uniform(1000, 50000),
            )
        else:
            v["speed"] = min(120.0, max(0.0, v["speed"] + rng.uniform(-3, 3)))
            if rng.random() < 0.1:
                v["heading"] = rng.uniform(0, 359)
            v["soc"] -= 0.01
            v["temp_c"] += rng.uniform(-0.01, 0.01)
            v["kpa"] += rng.uniform(-0.005, 0.005)
            v["odometer_km"] += v["speed"] / 3600 * 2
        v["lat"] += rng.uniform(-0.0005, 0.0005)
        v["lon"] += rng.uniform(-0.0005, 0.0005)
        return _encode(
            {
                "ts": ts,
                "seq": seq,
                "gps": {"lat": round(v["lat"], 6), "lon": round(v["lon"], 6)},
                "speed": round(v["speed"], 1),
                "heading": round(v["heading"], 1),
                "soc": round(v["soc"], 1),
                "charging": False,
                "odometer_km": round(v["odometer_km"], 3),
                "ignition": True,
                "doors": {"locked": True},
                "battery": {"temp_c": round(v["temp_c"], 1)},
                "tyres": {"front_left": {"kpa": round(v["kpa"], 1)}},
            }
        )


class _Recorder:
    """An observer that keeps each batch, to time the evaluator alone afterwards."""

    def __init__(self) -> None:
        self.batches: list[list[TwinUpdate]] = []

    def twin_updated(self, updates: list[TwinUpdate]) -> None:
        self.batches.append(list(updates))


async def run_ingest(
    store: Store,
    vehicles: int,
    messages: int,
    engine: RulesEngine | None,
    seed: int,
    mode: str,
    observer: object = None,
) -> float:
    """Seconds per message through the consumer (decode, validate, merge, commit, observers)."""
    service = TwinService(store)
    if engine is not None:
        service.observers.append(engine)
    if observer is not None:
        service.observers.append(observer)  # type: ignore[arg-type]
    fleet = Telemetry(vehicles, random.Random(seed), mode)
    base = time.time() - messages * 0.001
    payloads = [fleet.message(i % vehicles, i, base + i * 0.001) for i in range(messages)]
    ids = [f"veh-{i:05d}" for i in range(vehicles)]
    consumer = asyncio.get_running_loop().create_task(service.run())
    started = time.perf_counter()
    for i, payload in enumerate(payloads):
        await service.submit(Inbound(ids[i % vehicles], MessageKind.TELEMETRY, payload, base + i * 0.001))
    service.stop()
    await consumer
    return (time.perf_counter() - started) / messages


@contextlib.asynccontextmanager
async def pg_schema(database: str) -> AsyncIterator[str]:
    """A fresh schema in `database` for one pass; the URL puts it first on the search path."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
        await conn.execute(f"CREATE SCHEMA {schema}".encode())
    sep = "&" if "?" in database else "?"
    try:
        yield f"{database}{sep}options={quote(f'-c search_path={schema},public')}"
    finally:
        async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vehicles", type=int, default=20_000)
    parser.add_argument("--rules", type=int, default=100)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--mode", choices=["drift", "churn"], default="drift")
    parser.add_argument("--store", choices=["memory", "sqlite", "postgresql"], default="memory")
    parser.add_argument("--database", default="postgresql://127.0.0.1:5432/test", help="for --store postgresql")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    definitions = make_rules(args.rules, rng)
    zones = {f"zone-{z}": Circle(lat=19.4 + 0.02 * z, lon=-99.13, radius_m=3000) for z in range(5)}

    with tempfile.TemporaryDirectory() as tmp:

        @contextlib.asynccontextmanager
        async def open_database_at(name: str) -> AsyncIterator[str]:
            if args.store == "sqlite":
                yield f"sqlite:///{Path(tmp) / name}.db"
            else:
                async with pg_schema(args.database) as url:
                    yield url

        @contextlib.asynccontextmanager
        async def open_stores(name: str) -> AsyncIterator[tuple[Store, RulesStore]]:
            if args.store == "memory":
                async with MemoryStore() as memory, MemoryRulesStore() as memory_rules:
                    yield memory, memory_rules
                return
            async with (
                open_database_at(name) as url,
                open_database(url) as db,
                twin_store(db) as store,
                rules_store(db) as rules,
            ):
                yield store, rules

        async with open_stores("plain") as (store, _):
            # A first pass creates the twins, so both measured passes update existing ones.
            await run_ingest(store, args.vehicles, args.vehicles, None, args.seed, args.mode)
            plain = await run_ingest(store, args.vehicles, args.messages, None, args.seed, args.mode)
        async with open_stores("rules") as (store, alert_store):
            await run_ingest(store, args.vehicles, args.vehicles, None, args.seed, args.mode)
            engine = RulesEngine(alert_store, store, file_rules=definitions, file_zones=zones)
            async with engine:
                recorder = _Recorder()
                with_rules = await run_ingest(
                    store, args.vehicles, args.messages, engine, args.seed, args.mode, recorder
                )
                evaluations = engine.core.evaluations
                open_alerts = len(await engine.store.open_alerts())

        # The evaluator alone, over the same batches, on a fresh core.
        core = engine.core.__class__()
        core.zones = engine.core.zones
        for compiled in engine.core.rules.values():
            core.put_rule(compiled, 0.0)
        started = time.perf_counter()
        for batch in recorder.batches:
            core.observe(batch, time.time())
        evaluator_only = (time.perf_counter() - started) / args.messages

    added = with_rules - plain
    print(f"store={args.store} mode={args.mode} vehicles={args.vehicles} rules={args.rules} messages={args.messages}")
    print(f"ingest without rules     {plain * 1e6:8.1f} us/message  ({1 / plain:,.0f} messages/s)")
    print(f"ingest with rules        {with_rules * 1e6:8.1f} us/message  ({1 / with_rules:,.0f} messages/s)")
    print(f"added by rules           {added * 1e6:8.1f} us/message  ({added / plain:+.1%} of ingest)")
    print(f"evaluator alone          {evaluator_only * 1e6:8.1f} us/message")
    print(f"rule evaluations         {evaluations / args.messages:8.1f} per message (of {args.rules} rules)")
    print(f"open alerts at the end   {open_alerts}")


if __name__ == "__main__":
    asyncio.run(main())
