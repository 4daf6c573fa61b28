"""`python -m bench`: run the scenarios side by side and write results, a summary and charts."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import report, scale_out, scenarios
from bench.scenarios import Scale, ScenarioResult

# Ceiling and ingest run back to back so their ratio holds on a noisy machine.
SCENARIOS = ("ceiling", "ingest", "peer", "naive", "api", "connections", "rules", "scale")
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="seconds-long run with small numbers (for tests)")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, metavar="SCENARIO", help=f"from {', '.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, help=f"results folder (default {DEFAULT_OUT}; quick: a quick/ subfolder)")
    parser.add_argument("--connections", type=int, help="connections scenario target (default 15000)")
    parser.add_argument("--measure", type=float, help="seconds of measured traffic per run (default 20)")
    parser.add_argument("--publishers", type=int, help="publishing vehicles in the saturated runs (default 200)")
    parser.add_argument(
        "--offered", type=float, help="msg/s the scale scenario offers each configuration (default 1500)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    scale = Scale.quick_scale() if args.quick else Scale()
    overrides: dict[str, Any] = {}
    if args.connections is not None:
        overrides["connections"] = args.connections
    if args.measure is not None:
        overrides["measure_s"] = args.measure
    if args.publishers is not None:
        overrides["publishers"] = args.publishers
    if args.offered is not None:
        overrides["scale_offered"] = args.offered
    scale = dataclasses.replace(scale, **overrides)
    out = args.out or (DEFAULT_OUT / "quick" if args.quick else DEFAULT_OUT)
    chosen = args.only or list(SCENARIOS)
    tmp = scenarios.make_tmp()
    runners: dict[str, Callable[[], ScenarioResult]] = {
        "ceiling": lambda: scenarios.ceiling(scale),
        "ingest": lambda: scenarios.ingest(scale, tmp),
        "peer": lambda: scenarios.peer(scale, tmp),
        "naive": lambda: scenarios.naive(scale),
        "api": lambda: scenarios.api(scale, tmp),
        "connections": lambda: scenarios.connections(scale, tmp),
        "rules": lambda: scenarios.rules_cost(scale, tmp),
        "scale": lambda: scale_out.scale_scenario(scale, tmp, scenarios.write_rules),
    }
    results = []
    started = time.monotonic()
    try:
        for name in SCENARIOS:
            if name not in chosen:
                continue
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            t = time.monotonic()
            try:
                result = runners[name]()
            except Exception as exc:
                traceback.print_exc()
                result = ScenarioResult(name, status="failed", notes=[f"{type(exc).__name__}: {exc}"])
            print(f"bench: {name} {result.status} in {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)
            results.append(result.to_dict())
    finally:
        scenarios.remove_tmp(tmp)
    written = report.write_results(out, results, quick=args.quick, argv=argv)
    print(f"bench: done in {time.monotonic() - started:.0f} s; wrote {len(written)} files to {out}", file=sys.stderr)
    print((out / "SUMMARY.md").read_text())
    return 0 if all(r["status"] != "failed" for r in results) else 1
