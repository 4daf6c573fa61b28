"""`python -m firmware_sim.load`: run one load plan against a broker and print the result as JSON."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import msgspec

from firmware_sim.errors import SimError
from firmware_sim.load.plan import LoadPlan, Mode
from firmware_sim.load.runner import run_load
from firmware_sim.secrets import read_secrets


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_sim.load", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--vehicles", type=int, default=None, help="default 1000, or every vehicle of --secrets")
    parser.add_argument(
        "--secrets",
        metavar="FILE",
        help="log in to a secure hub with the vehicle_id,fleet,secret CSV of `fleethub vehicles import --output`",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.RATE.value)
    parser.add_argument("--qos", type=int, choices=[0, 1], default=1)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between reports (rate mode)")
    parser.add_argument("--inflight", type=int, default=1, help="unacknowledged messages per vehicle")
    parser.add_argument("--ramp", type=float, default=10.0, help="seconds over which vehicles connect")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--measure", type=float, default=20.0, help="seconds of measured traffic")
    parser.add_argument("--offline-fraction", type=float, default=0.0, help="share of vehicles that go offline once")
    parser.add_argument("--storm", action="store_true", help="end with a reconnect storm")
    parser.add_argument("--storm-window", type=float, default=5.0)
    parser.add_argument("--prefix", default="load-")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        credentials = tuple(read_secrets(args.secrets).items()) if args.secrets else ()
        plan = LoadPlan(
            credentials=credentials,
            host=args.host,
            port=args.port,
            vehicles=args.vehicles if args.vehicles is not None else (len(credentials) or 1000),
            workers=args.workers,
            mode=Mode(args.mode),
            qos=args.qos,
            interval_s=args.interval,
            inflight=args.inflight,
            ramp_s=args.ramp,
            warmup_s=args.warmup,
            measure_s=args.measure,
            offline_fraction=args.offline_fraction,
            storm=args.storm,
            storm_window_s=args.storm_window,
            prefix=args.prefix,
            seed=args.seed,
        )
        result = run_load(plan)
    except SimError as exc:
        print(f"firmware_sim.load: {exc}", file=sys.stderr)
        return 2
    summary = msgspec.to_builtins(result)
    summary.pop("acks_per_s")
    summary.pop("sent_per_s")
    print(msgspec.json.format(msgspec.json.encode(summary)).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
