"""What odometer and engine-hours derivation adds to ingest: the same telemetry with and without it.

    .venv/bin/python -m bench.meters_cost [--vehicles 20000] [--messages 100000] [--gps-only]
                                          [--store memory|sqlite] [--repeat 3]

Runs the twin service's consumer over the same telemetry with the meter deriver off and
on (as a telemetry enricher), interleaved `--repeat` times, keeping the fastest of each,
and reports seconds per message and the share the deriver adds; then times
`MeterDeriver.enrich` alone. `--gps-only` strips the vehicle's own odometer from every
message, so every message takes the GPS path (the costlier one).
The in-memory twin store makes ingest as cheap as it gets, so the share is the largest
it can be. Times are the process's CPU time (a shared, busy machine inflates wall time,
not CPU time as much). Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

import msgspec

from bench.rules_eval import Telemetry
from kernel import open_database
from maintenance import MeterDeriver
from twin import Inbound, MemoryStore, MessageKind, Store, TwinService, TwinState, twin_store

_decode = msgspec.json.Decoder(dict).decode
_encode = msgspec.json.Encoder().encode


def payloads(vehicles: int, messages: int, seed: int, gps_only: bool) -> tuple[list[bytes], float]:
    fleet = Telemetry(vehicles, random.Random(seed), "drift")
    base = time.time() - messages * 0.001 - 60
    out = []
    for i in range(messages):
        payload = fleet.message(i % vehicles, i, base + i * 0.001)
        if gps_only:
            data = _decode(payload)
            data.pop("odometer_km")
            payload = _encode(data)
        out.append(payload)
    return out, base


async def run(store: Store, vehicles: int, items: list[bytes], base: float, deriver: MeterDeriver | None) -> float:
    service = TwinService(store)
    if deriver is not None:
        service.enrichers.append(deriver)
    ids = [f"veh-{i:05d}" for i in range(vehicles)]
    consumer = asyncio.get_running_loop().create_task(service.run())
    started = time.process_time()
    for i, payload in enumerate(items):
        await service.submit(Inbound(ids[i % vehicles], MessageKind.TELEMETRY, payload, base + i * 0.001))
    service.stop()
    await consumer
    return (time.process_time() - started) / len(items)


def enrich_alone(vehicles: int, items: list[bytes]) -> float:
    deriver = MeterDeriver()
    states = [TwinState(vehicle_id=f"veh-{i:05d}", created_at=0.0, updated_at=0.0) for i in range(vehicles)]
    decoded = [_decode(p) for p in items]
    started = time.process_time()
    for i, data in enumerate(decoded):
        deriver.enrich(states[i % vehicles], data["ts"], data)
    return (time.process_time() - started) / len(items)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vehicles", type=int, default=20_000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--gps-only", action="store_true")
    parser.add_argument("--store", choices=["memory", "sqlite"], default="memory")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, interleaved; the fastest counts")
    args = parser.parse_args()
    items, base = payloads(args.vehicles, args.messages, args.seed, args.gps_only)
    results: dict[str, float] = {"off": float("inf"), "on": float("inf")}
    with tempfile.TemporaryDirectory() as tmp:
        # Interleaved and repeated, the best of each kept: a busy machine slows single runs unevenly.
        for attempt in range(args.repeat):
            for label in ("off", "on"):
                deriver = MeterDeriver() if label == "on" else None
                if args.store == "memory":
                    async with MemoryStore() as store:
                        took = await run(store, args.vehicles, items, base, deriver)
                else:
                    name = Path(tmp) / f"{label}-{attempt}.db"
                    async with open_database(f"sqlite:///{name}") as db, twin_store(db) as store:
                        took = await run(store, args.vehicles, items, base, deriver)
                results[label] = min(results[label], took)
    alone = enrich_alone(args.vehicles, items)
    off, on = results["off"], results["on"]
    path = "GPS" if args.gps_only else "vehicle odometer"
    print(f"{args.messages} messages, {args.vehicles} vehicles, {args.store} store, {path} path")
    print(f"ingest without meters: {off * 1e6:8.1f} us/message")
    print(f"ingest with meters:    {on * 1e6:8.1f} us/message  (+{(on - off) / off * 100:.1f} %)")
    share = alone / off * 100
    print(f"MeterDeriver.enrich alone: {alone * 1e6:.2f} us/message ({share:.1f} % of ingest without meters)")


if __name__ == "__main__":
    asyncio.run(main())
