"""Run a `LoadPlan` over several worker processes and add up what they saw.

Each worker drives its own slice of the fleet on its own event loop (one core each at
most), so the generator scales past what one Python process can send. Workers follow
the plan's timeline on their own and exit at its end; the runner only starts them,
relays their events and collects their results, and kills any that overrun.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from multiprocessing.connection import Connection, wait
from types import TracebackType
from typing import Any, Self

import msgspec

from firmware_sim.errors import SimError
from firmware_sim.load.histogram import Histogram
from firmware_sim.load.plan import LoadPlan, Mode
from firmware_sim.load.worker import run_worker

# Time for a spawned worker to import and build its vehicles before the timeline starts.
STARTUP_S = 2.5


def _worker_entry(plan_bytes: bytes, index: int, t0: float, conn: Connection) -> None:
    plan = msgspec.msgpack.decode(plan_bytes, type=LoadPlan)

    def emit(event: dict[str, Any]) -> None:
        conn.send_bytes(msgspec.msgpack.encode(event))

    try:
        result = run_worker(plan, index, t0, emit)
        emit({"event": "result", "worker": index, "result": result})
    except BaseException as exc:
        emit({"event": "error", "worker": index, "error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        conn.close()


class LoadRun:
    """Workers running one plan; use as a context manager so none outlives the block."""

    def __init__(self, plan: LoadPlan, *, startup_s: float = STARTUP_S) -> None:
        self.plan = plan
        self.t0 = 0.0
        self._startup_s = startup_s
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._conns: list[Connection] = []
        self._events: list[dict[str, Any]] = []
        self._results: dict[int, dict[str, Any]] = {}
        self._errors: dict[int, str] = {}
        self._lock = threading.Condition()
        self._reader: threading.Thread | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()

    def start(self) -> float:
        """Start the workers; returns the wall-clock start of the plan's timeline."""
        ctx = multiprocessing.get_context("spawn")
        self.t0 = time.time() + self._startup_s
        plan_bytes = msgspec.msgpack.encode(self.plan)
        for index in range(self.plan.workers):
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_worker_entry, args=(plan_bytes, index, self.t0, child), name=f"load-worker-{index}"
            )
            proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)
        self._reader = threading.Thread(target=self._read, name="load-events", daemon=True)
        self._reader.start()
        return self.t0

    def _read(self) -> None:
        open_conns = list(self._conns)
        while open_conns:
            for ready in wait(open_conns, timeout=0.5):
                conn = open_conns[open_conns.index(ready)]  # type: ignore[arg-type]  # wait returns what it was given
                try:
                    event = msgspec.msgpack.decode(conn.recv_bytes())
                except (EOFError, OSError):
                    open_conns.remove(conn)
                    continue
                with self._lock:
                    event["received_at"] = time.time()
                    self._events.append(event)
                    if event["event"] == "result":
                        self._results[event["worker"]] = event["result"]
                    elif event["event"] == "error":
                        self._errors[event["worker"]] = event["error"]
                    self._lock.notify_all()

    def wait_ramped(self, timeout_s: float) -> float | None:
        """Wait until every worker connected all its vehicles once; the wall time then, or None."""
        deadline = time.time() + timeout_s
        with self._lock:
            while True:
                ramped = [e["at"] for e in self._events if e["event"] == "ramped"]
                if len(ramped) == self.plan.workers:
                    return float(max(ramped))
                if self._errors or len(self._results) == self.plan.workers:
                    return None
                left = deadline - time.time()
                if left <= 0:
                    return None
                self._lock.wait(min(left, 0.5))

    def join(self, grace_s: float = 20.0) -> LoadResult:
        """Wait for the plan to end and every worker to report; kill the ones that do not."""
        deadline = self.t0 + self.plan.end + grace_s
        for proc in self._procs:
            proc.join(max(0.1, deadline - time.time()))
        self.kill()
        if self._reader is not None:
            self._reader.join(5)
        missing = [i for i in range(self.plan.workers) if i not in self._results]
        if missing:
            detail = "; ".join(f"worker {i}: {self._errors.get(i, 'no result')}" for i in missing)
            raise SimError(f"load workers failed: {detail}")
        return LoadResult.combine(self.plan, self.t0, [self._results[i] for i in range(self.plan.workers)])

    def kill(self) -> None:
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


class LoadResult(msgspec.Struct, kw_only=True):
    """What the whole generator saw; times in seconds, rates per second."""

    vehicles: int
    workers: int
    mode: str
    qos: int
    measure_s: float
    first_connects: int
    connect_attempts: int
    connect_failures: int
    connect_errors: dict[str, int]
    # From the plan's start to every vehicle's first CONNACK, and the rate that implies.
    ramp_s: float | None
    connect_rate_per_s: float | None
    sent: int
    acked: int
    sent_in_window: int
    acked_in_window: int
    # Acknowledged messages per second in the measured window (sent ones for QoS 0).
    throughput_msg_s: float
    offered_msg_s: float
    latency: dict[str, float | int | None]
    received: int
    offline_periods: int
    buffered_offline: int
    backfilled: int
    dropped_readings: int
    unexpected_drops: int
    unacked_lost_on_drop: int
    unacked_at_end: int
    storm_dropped: int
    storm_reconnected: int
    # From the storm's start to the last dropped vehicle's CONNACK.
    storm_s: float | None
    acks_per_s: dict[str, int]
    sent_per_s: dict[str, int]
    # Generator health: CPU seconds per worker over the run, and how late its ticker woke up.
    worker_cpu_s: list[float]
    worker_cpu_share: list[float]
    loop_lag: dict[str, float | int | None]
    run_s: float

    @classmethod
    def combine(cls, plan: LoadPlan, t0: float, parts: list[dict[str, Any]]) -> LoadResult:
        latency = Histogram.merged(Histogram.from_dict(p["latency"]) for p in parts)
        lag = Histogram.merged(Histogram.from_dict(p["loop_lag"]) for p in parts)

        def total(key: str) -> int:
            return sum(int(p[key]) for p in parts)

        ramp_done = [p["ramp_done_at"] for p in parts]
        ramp_s = max(ramp_done) - t0 if all(r is not None for r in ramp_done) else None
        storm_starts = [p["storm_started_at"] for p in parts if p["storm_started_at"] is not None]
        storm_ends = [p["storm_last_connack_at"] for p in parts if p["storm_last_connack_at"] is not None]
        storm_s = max(storm_ends) - min(storm_starts) if storm_starts and storm_ends else None
        acks: dict[str, int] = {}
        sent: dict[str, int] = {}
        for p in parts:
            for key, n in p["acks_per_s"].items():
                acks[key] = acks.get(key, 0) + n
            for key, n in p["sent_per_s"].items():
                sent[key] = sent.get(key, 0) + n
        measure_s = plan.measure_s or 1.0
        acked_in_window = total("acked_in_window")
        sent_in_window = total("sent_in_window")
        counted = acked_in_window if plan.qos else sent_in_window
        run_s = plan.end
        return cls(
            vehicles=plan.vehicles,
            workers=plan.workers,
            mode=plan.mode.value,
            qos=plan.qos,
            measure_s=plan.measure_s,
            first_connects=total("first_connects"),
            connect_attempts=total("connect_attempts"),
            connect_failures=total("connect_failures"),
            connect_errors=_add_counts(p["connect_errors"] for p in parts),
            ramp_s=ramp_s,
            connect_rate_per_s=plan.vehicles / ramp_s if ramp_s else None,
            sent=total("sent"),
            acked=total("acked"),
            sent_in_window=sent_in_window,
            acked_in_window=acked_in_window,
            throughput_msg_s=counted / measure_s if plan.mode is not Mode.IDLE else 0.0,
            offered_msg_s=sent_in_window / measure_s,
            latency=latency.summary_ms(),
            received=total("received"),
            offline_periods=total("offline_periods"),
            buffered_offline=total("buffered_offline"),
            backfilled=total("backfilled"),
            dropped_readings=total("dropped_readings"),
            unexpected_drops=total("unexpected_drops"),
            unacked_lost_on_drop=total("unacked_lost_on_drop"),
            unacked_at_end=total("unacked_at_end"),
            storm_dropped=total("storm_dropped"),
            storm_reconnected=total("storm_reconnected"),
            storm_s=storm_s,
            acks_per_s=dict(sorted(acks.items(), key=lambda kv: int(kv[0]))),
            sent_per_s=dict(sorted(sent.items(), key=lambda kv: int(kv[0]))),
            worker_cpu_s=[round(p["cpu_s"], 3) for p in parts],
            worker_cpu_share=[round(p["cpu_s"] / run_s, 3) for p in parts],
            loop_lag=lag.summary_ms(),
            run_s=run_s,
        )


def _add_counts(parts: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in parts:
        for key, n in part.items():
            out[key] = out.get(key, 0) + n
    return out


def run_load(plan: LoadPlan) -> LoadResult:
    """Run `plan` to its end and return the combined result."""
    with LoadRun(plan) as run:
        return run.join()
