"""`python -m bench.scale_profile`: one small worker-mode run, optionally sampled with py-spy.

The `scale` scenario's harness (Mosquitto, `fleethub serve --broker` workers, one fresh
PostgreSQL database, the same 20 rules) at a size chosen on the command line, for
finding where a worker's time goes rather than for the summary table:

    python -m bench.scale_profile --workers 2 --vehicles 200 --offered 600 --seconds 15 --profile /tmp/prof

Prints the stored rate, each worker's CPU seconds and share of forwarded messages, and,
with --profile, writes one py-spy flame graph (SVG) and one collapsed-stack file per worker
and prints the functions the samples spent most time in.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import procs, scale_out, scenarios
from firmware_sim.load import LoadPlan, LoadRun, Mode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_profile", description=__doc__)
    parser.add_argument("--workers", type=int, default=1, help="workers behind Mosquitto (default 1)")
    parser.add_argument("--vehicles", type=int, default=200, help="publishing vehicles (default 200)")
    parser.add_argument("--offered", type=float, default=600.0, help="offered msg/s over the fleet (default 600)")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds (default 15)")
    parser.add_argument("--profile", type=Path, help="folder for py-spy output (default: no profile)")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second (default 200)")
    parser.add_argument("--logs", type=Path, help="folder to write each worker's output to (default: none)")
    return parser


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise procs.BenchError("py-spy not found: pip install py-spy (the bench extra has it)")
    return found


def _inbox_counts(url: str) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute(
            "SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_del), 0) FROM pg_stat_user_tables "
            "WHERE relname = 'cluster_inbox'"
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


# Where a sample's time goes, by the first of these frames found in its stack (most specific first).
CATEGORIES = (
    ("inbox: put (forwarding worker)", ("Inbox.put",)),
    ("inbox: take (owner)", ("Inbox.take",)),
    ("inbox: delete (owner)", ("Inbox.done",)),
    ("leases and takeover", ("cluster/leases.py", "ClusterWorker._apply", "ClusterWorker._heartbeat")),
    ("rules", ("rules/",)),
    ("commands", ("commands/",)),
    ("pipeline: store commit", ("twin/commit.py", "twin/stores/")),
    ("pipeline: decode, merge, batch", ("twin/",)),
    ("routing (topic, partition, acks)", ("cluster/worker.py",)),
    ("paho: network thread", ("Client._thread_main",)),
    ("psycopg (other)", ("psycopg/",)),
    ("event loop: waiting", ("EpollSelector.select",)),
    ("logging", ("structlog/", "logging/")),
)


def categorise(collapsed: Path) -> dict[str, float]:
    """The share of a py-spy `--format raw` file's samples per category (`CATEGORIES`, else "other")."""
    counts: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        name = next((n for n, marks in CATEGORIES if any(m in stack for m in marks)), "other")
        counts[name] += int(count)
    samples = sum(counts.values()) or 1
    return {name: round(n / samples, 3) for name, n in counts.most_common()}


def top_functions(collapsed: Path, limit: int = 15) -> list[tuple[str, float]]:
    """(function, share of samples spent in it, not in what it called), largest first."""
    own: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples += int(count)
        own[stack.split(";")[-1]] += int(count)
    return [(f, n / max(samples, 1)) for f, n in own.most_common(limit)]


def _cpu_of(name: str) -> float:
    """CPU seconds of every live process called `name` (all of PostgreSQL's backends, say)."""
    total = 0.0
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() != name:
                continue
            sample = procs.read_process(int(comm.parent.name))
        except OSError:
            continue
        total += sample.cpu_s if sample is not None else 0.0
    return total


def run(args: argparse.Namespace) -> dict[str, Any]:
    why_not = procs.postgres_available()
    if why_not:
        raise procs.BenchError(why_not)
    tmp = scenarios.make_tmp()
    out: dict[str, Any] = {"workers": args.workers, "vehicles": args.vehicles, "offered_msg_s": args.offered}
    try:
        env = {"FLEETHUB_RULES_FILE": str(scenarios.write_rules(tmp / "rules.toml"))}
        with (
            procs.postgres_database(f"profile_w{args.workers}") as url,
            scale_out.mosquitto_for_workers() as port,
            scale_out.workers(args.workers, port, url, env) as servers,
        ):
            plan = LoadPlan(
                port=port,
                vehicles=args.vehicles,
                workers=1,
                mode=Mode.RATE,
                interval_s=args.vehicles / args.offered,
                inflight=8,
                ramp_s=2.0,
                warmup_s=3.0,
                measure_s=args.seconds,
                prefix="load-",
            )
            spies: list[subprocess.Popen[bytes]] = []
            with scale_out.StoredCounter(url) as counter, LoadRun(plan) as load:
                start, end = load.t0 + plan.measure_from, load.t0 + plan.measure_until
                time.sleep(max(0.0, start - time.time()))
                cpu0 = [procs.read_process(s.pid) for s in servers]
                others0 = {name: _cpu_of(name) for name in ("postgres", "mosquitto")}
                inbox0 = _inbox_counts(url)
                if args.profile is not None:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    for s in servers:
                        base = args.profile / f"{s.name}"
                        # --gil: only what holds the interpreter, so waiting threads (paho's select) do not count.
                        common = ["--pid", str(s.pid), "--duration", str(int(args.seconds)), "--rate", str(args.rate)]
                        common += ["--format", "raw", "--nonblocking", "--gil"]
                        spies.append(
                            subprocess.Popen(
                                [_py_spy(), "record", *common, "-o", f"{base}.txt"],
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL,
                            )
                        )
                time.sleep(max(0.0, end - time.time()))
                cpu1 = [procs.read_process(s.pid) for s in servers]
                others1 = {name: _cpu_of(name) for name in ("postgres", "mosquitto")}
                inbox1 = _inbox_counts(url)
                load.join()
                for spy in spies:
                    spy.wait(60)
                out["stored_msg_s"] = round(counter.rate(start, end), 1)
                out["backlog_drained_s"] = scale_out._drained(counter)
            if args.logs is not None:
                args.logs.mkdir(parents=True, exist_ok=True)
                for s in servers:
                    (args.logs / f"{s.name}.log").write_text("".join(s.output))
            out["forwarded_in_window"] = inbox1[0] - inbox0[0]
            out["inbox_deleted_in_window"] = inbox1[1] - inbox0[1]
            out["worker_cpu_s"] = [
                round(b.cpu_s - a.cpu_s, 2) if a and b else None for a, b in zip(cpu0, cpu1, strict=True)
            ]
            # Every PostgreSQL backend and Mosquitto on the machine: other users' share is in it too.
            out["postgres_cpu_s"] = round(others1["postgres"] - others0["postgres"], 2)
            out["mosquitto_cpu_s"] = round(others1["mosquitto"] - others0["mosquitto"], 2)
            out["load_average"] = scale_out._loadavg()
    finally:
        scenarios.remove_tmp(tmp)
    if args.profile is not None:
        for n in range(args.workers):
            collapsed = args.profile / f"worker-{n + 1}.txt"
            if collapsed.exists():
                out[f"worker_{n + 1}_categories"] = categorise(collapsed)
                out[f"worker_{n + 1}_self"] = [f"{share:6.1%}  {name}" for name, share in top_functions(collapsed)]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(json.dumps(run(args), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
