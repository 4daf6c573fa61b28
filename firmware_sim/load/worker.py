"""One load worker process: a slice of the fleet on one event loop, without a task per vehicle.

Vehicles are plain objects. Connection attempts go through a fixed pool of connector
tasks; readings are produced by one ticker walking a heap of due times; PUBACKs arrive
as protocol callbacks that send the next message at once. That keeps the cost per
message to building and encoding one payload, so the generator stays ahead of the hub.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import gc
import heapq
import random
import resource
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import msgspec

from firmware_sim.cities import get_city
from firmware_sim.load.fdlimit import ensure_fd_limit
from firmware_sim.load.histogram import Histogram
from firmware_sim.load.mqtt import ConnectRefused, MqttError, MqttProtocol, topic_bytes
from firmware_sim.load.plan import LoadPlan, Mode, Payload
from firmware_sim.vehicle import Vehicle

_encode = msgspec.json.Encoder().encode

TICK_S = 0.02
PING_CHECK_S = 5.0
# Reconnect back-off after a failed attempt: doubles from the first value up to the second.
BACKOFF_S = (0.5, 8.0)
# After a refused login: retrying at the connection back-off cannot succeed and trips the hub's login back-off.
REFUSED_BACKOFF_S = (30.0, 300.0)


class _State(enum.Enum):
    WAITING = 0
    CONNECTING = 1
    ONLINE = 2
    OFFLINE = 3


class _Sim:
    """One vehicle of the load fleet and its MQTT session."""

    __slots__ = (
        "backoff",
        "buffer",
        "connected_once",
        "index",
        "inflight",
        "last_send",
        "model",
        "offline_at",
        "offline_s",
        "proto",
        "state",
        "storm_pending",
        "topic",
        "vid",
    )

    def __init__(self, index: int, vid: str, model: Vehicle, topic: bytes, buffer_max: int) -> None:
        self.index = index
        self.vid = vid
        self.model = model
        self.topic = topic
        self.proto: MqttProtocol | None = None
        self.state = _State.WAITING
        # (reading, recorded while offline)
        self.buffer: collections.deque[tuple[dict[str, Any], bool]] = collections.deque(maxlen=buffer_max)
        self.inflight: dict[int, float] = {}
        self.last_send = 0.0
        self.backoff = 0.0
        self.connected_once = False
        self.storm_pending = False
        self.offline_at: float | None = None
        self.offline_s = 0.0


class Stats:
    def __init__(self) -> None:
        self.connect_attempts = 0
        self.connects = 0
        self.connect_failures = 0
        self.connect_errors: collections.Counter[str] = collections.Counter()
        self.first_connects = 0
        self.first_connect_at: float | None = None
        self.ramp_done_at: float | None = None
        self.sent = 0
        self.sent_in_window = 0
        self.acked = 0
        self.acked_in_window = 0
        self.received = 0
        self.buffered_offline = 0
        self.backfilled = 0
        self.dropped_readings = 0
        self.offline_periods = 0
        self.unexpected_drops = 0
        self.unacked_lost_on_drop = 0
        self.storm_dropped = 0
        self.storm_reconnected = 0
        self.storm_started_at: float | None = None
        self.storm_last_connack_at: float | None = None
        self.latency = Histogram()
        self.loop_lag = Histogram()
        self.acks_per_s: collections.Counter[int] = collections.Counter()
        self.sent_per_s: collections.Counter[int] = collections.Counter()


class Worker:
    def __init__(
        self, plan: LoadPlan, worker_index: int, t0: float, emit: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.plan = plan
        self.worker_index = worker_index
        self.t0 = t0
        self.emit = emit or (lambda _event: None)
        self.stats = Stats()
        self._rng = random.Random(plan.seed * 1_000_003 + worker_index)
        self._source = self._source_address()
        self._sims: list[_Sim] = []
        cities = [get_city(slug) for slug in plan.cities]
        for index in plan.slice_for(worker_index):
            vid = plan.vehicle_id(index)
            model = Vehicle(
                cities[index % len(cities)],
                random.Random(plan.seed * 7_919 + index),
                t0,
                report_interval_s=plan.interval_s,
            )
            self._sims.append(_Sim(index, vid, model, topic_bytes(plan.topic.format(vid=vid)), plan.buffer_max))
        self._connect_heap: list[tuple[float, int]] = []
        self._report_heap: list[tuple[float, int]] = []
        self._offline_heap: list[tuple[float, int]] = []
        self._connect_queue: asyncio.Queue[_Sim] = asyncio.Queue()
        self._waiting_first = len(self._sims)
        self._publishing = True
        self._m_from = t0 + plan.measure_from
        self._m_until = t0 + plan.measure_until
        self._plan_offline()

    def _source_address(self) -> tuple[str, int] | None:
        if not self.plan.spread_source_addresses or not self.plan.host.startswith("127."):
            return None
        return (f"127.0.{1 + self.worker_index // 200}.{10 + self.worker_index % 200}", 0)

    def _plan_offline(self) -> None:
        plan = self.plan
        if plan.offline_fraction <= 0 or plan.mode is not Mode.RATE:
            return
        for local, sim in enumerate(self._sims):
            if self._rng.random() < plan.offline_fraction:
                # Leave early enough in the window that the vehicle is back before it closes.
                duration = self._rng.uniform(*plan.offline_s)
                latest = max(self._m_from, self._m_until - duration - 1.0)
                at = self._rng.uniform(self._m_from, latest)
                sim.offline_at, sim.offline_s = at, duration
                heapq.heappush(self._offline_heap, (at, local))

    # -- the run -----------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        plan = self.plan
        ensure_fd_limit(len(self._sims) + 64)
        n = len(self._sims)
        for local in range(n):
            # Evenly spread over the ramp, each start jittered by up to one slot either way.
            slot = plan.ramp_s / max(1, n)
            offset = (local + 0.5) * slot + self._rng.uniform(-slot, slot)
            heapq.heappush(self._connect_heap, (self.t0 + min(plan.ramp_s, max(0.0, offset)), local))
        gc.freeze()
        tasks = [asyncio.create_task(self._connector()) for _ in range(plan.connect_concurrency)]
        tasks.append(asyncio.create_task(self._dispatch_connects()))
        tasks.append(asyncio.create_task(self._ticker()))
        try:
            await _sleep_until(self.t0 + plan.publish_until)
            self._publishing = False
            await self._drain(time.time() + plan.drain_s)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            unacked = 0
            for sim in self._sims:
                unacked += len(sim.inflight)
                sim.inflight.clear()
                if sim.proto is not None:
                    sim.state = _State.OFFLINE
                    sim.proto.disconnect()
            await asyncio.sleep(0.2)
            for sim in self._sims:
                if sim.proto is not None:
                    sim.proto.drop()
        return self._result(unacked)

    async def _drain(self, until: float) -> None:
        """Give outstanding PUBACKs until `until` to arrive."""
        while any(s.inflight for s in self._sims):
            left = until - time.time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.05))

    def _result(self, unacked: int) -> dict[str, Any]:
        s = self.stats
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "worker": self.worker_index,
            "vehicles": len(self._sims),
            "connect_attempts": s.connect_attempts,
            "connects": s.connects,
            "connect_failures": s.connect_failures,
            "connect_errors": dict(s.connect_errors),
            "first_connects": s.first_connects,
            "first_connect_at": s.first_connect_at,
            "ramp_done_at": s.ramp_done_at,
            "sent": s.sent,
            "sent_in_window": s.sent_in_window,
            "acked": s.acked,
            "acked_in_window": s.acked_in_window,
            "received": s.received,
            "buffered_offline": s.buffered_offline,
            "backfilled": s.backfilled,
            "dropped_readings": s.dropped_readings,
            "offline_periods": s.offline_periods,
            "unexpected_drops": s.unexpected_drops,
            "unacked_lost_on_drop": s.unacked_lost_on_drop,
            "unacked_at_end": unacked,
            "storm_dropped": s.storm_dropped,
            "storm_reconnected": s.storm_reconnected,
            "storm_started_at": s.storm_started_at,
            "storm_last_connack_at": s.storm_last_connack_at,
            "latency": s.latency.to_dict(),
            "loop_lag": s.loop_lag.to_dict(),
            "acks_per_s": {str(k): v for k, v in sorted(s.acks_per_s.items())},
            "sent_per_s": {str(k): v for k, v in sorted(s.sent_per_s.items())},
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "max_rss_kib": usage.ru_maxrss,
        }

    # -- connecting --------------------------------------------------------------------

    def _schedule_connect(self, sim: _Sim, at: float) -> None:
        sim.state = _State.WAITING
        heapq.heappush(self._connect_heap, (at, self._local(sim)))

    def _local(self, sim: _Sim) -> int:
        # Vehicles are dealt round-robin: worker w holds indexes w, w + W, w + 2W, ...
        return (sim.index - self.worker_index) // self.plan.workers

    async def _dispatch_connects(self) -> None:
        heap, queue = self._connect_heap, self._connect_queue
        while True:
            now = time.time()
            while heap and heap[0][0] <= now:
                _, local = heapq.heappop(heap)
                queue.put_nowait(self._sims[local])
            delay = heap[0][0] - now if heap else 0.05
            await asyncio.sleep(min(max(delay, 0.001), 0.02))

    async def _connector(self) -> None:
        while True:
            sim = await self._connect_queue.get()
            if self._publishing:
                await self._connect(sim)

    async def _connect(self, sim: _Sim) -> None:
        plan = self.plan
        loop = asyncio.get_running_loop()
        sim.state = _State.CONNECTING
        self.stats.connect_attempts += 1
        proto = MqttProtocol(
            on_ack=partial(self._on_ack, sim), on_message=self._on_message, version=5 if plan.mqtt5 else 4
        )
        proto.on_lost = partial(self._on_lost, sim, proto)
        try:
            async with asyncio.timeout(plan.connect_timeout_s):
                await loop.create_connection(lambda: proto, plan.host, plan.port, local_addr=self._source)
                await proto.handshake(
                    sim.vid,
                    username=sim.vid,
                    password=plan.secret(sim.index),
                    keepalive_s=plan.keepalive_s,
                    timeout_s=plan.connect_timeout_s,
                )
        except ConnectRefused as exc:
            self.stats.connect_failures += 1
            self.stats.connect_errors[_describe(exc)] += 1
            proto.drop()
            sim.backoff = min(REFUSED_BACKOFF_S[1], max(REFUSED_BACKOFF_S[0], sim.backoff * 2))
            self._schedule_connect(sim, time.time() + sim.backoff * self._rng.uniform(0.5, 1.0))
            return
        except (OSError, TimeoutError, MqttError) as exc:
            self.stats.connect_failures += 1
            self.stats.connect_errors[_describe(exc)] += 1
            proto.drop()
            sim.backoff = min(BACKOFF_S[1], max(BACKOFF_S[0], sim.backoff * 2))
            self._schedule_connect(sim, time.time() + sim.backoff * self._rng.uniform(0.5, 1.0))
            return
        now = time.time()
        sim.proto = proto
        sim.state = _State.ONLINE
        sim.backoff = 0.0
        sim.last_send = now
        self.stats.connects += 1
        if not sim.connected_once:
            sim.connected_once = True
            self.stats.first_connects += 1
            if self.stats.first_connect_at is None:
                self.stats.first_connect_at = now
            self._waiting_first -= 1
            if self._waiting_first == 0:
                self.stats.ramp_done_at = now
                self.emit({"event": "ramped", "worker": self.worker_index, "at": now})
            if plan.mode is Mode.RATE:
                first = now + self._rng.uniform(0.0, plan.interval_s)
                heapq.heappush(self._report_heap, (first, self._local(sim)))
        if sim.storm_pending:
            sim.storm_pending = False
            self.stats.storm_reconnected += 1
            self.stats.storm_last_connack_at = now
        if plan.mode is Mode.SATURATE:
            self._fill(sim)
        elif plan.mode is Mode.RATE:
            self._drain_buffer(sim)
        elif plan.mode is Mode.RECONNECT_EACH:
            self._send(sim, self._reading(sim, now), offline=False)

    def _on_lost(self, sim: _Sim, proto: MqttProtocol, _exc: Exception | None) -> None:
        if sim.proto is not proto:
            # A connection that never got its CONNACK, or one already replaced.
            return
        sim.proto = None
        if sim.inflight:
            self.stats.unacked_lost_on_drop += len(sim.inflight)
            sim.inflight.clear()
        if sim.state is _State.ONLINE:
            # The hub closed the connection: reconnect as firmware would.
            self.stats.unexpected_drops += 1
            if self._publishing:
                sim.backoff = min(BACKOFF_S[1], max(BACKOFF_S[0], sim.backoff * 2))
                self._schedule_connect(sim, time.time() + sim.backoff * self._rng.uniform(0.5, 1.0))
            else:
                sim.state = _State.OFFLINE

    def _on_message(self, _topic: str, _payload: bytes) -> None:
        self.stats.received += 1

    # -- publishing --------------------------------------------------------------------

    def _reading(self, sim: _Sim, now: float) -> dict[str, Any]:
        sim.model.step(now)
        return sim.model.telemetry(now)

    def _send(self, sim: _Sim, reading: dict[str, Any], *, offline: bool) -> None:
        proto = sim.proto
        if proto is None:
            return
        now = time.time()
        reading["sent"] = round(now, 6)
        body = reading if self.plan.payload is Payload.TELEMETRY else {"state": {"reported": reading}}
        packet_id = proto.publish(sim.topic, _encode(body), self.plan.qos, alias=self.plan.topic_alias)
        if packet_id:
            sim.inflight[packet_id] = time.perf_counter()
        sim.last_send = now
        stats = self.stats
        stats.sent += 1
        stats.sent_per_s[int(now - self.t0)] += 1
        if self._m_from <= now < self._m_until:
            stats.sent_in_window += 1
        if offline:
            stats.backfilled += 1

    def _fill(self, sim: _Sim) -> None:
        while self._publishing and sim.proto is not None and len(sim.inflight) < self.plan.inflight:
            self._send(sim, self._reading(sim, time.time()), offline=False)

    def _drain_buffer(self, sim: _Sim) -> None:
        limit = self.plan.inflight if self.plan.qos else 1 << 30
        while sim.buffer and sim.proto is not None and len(sim.inflight) < limit and sim.proto.writable:
            reading, offline = sim.buffer.popleft()
            self._send(sim, reading, offline=offline)

    def _on_ack(self, sim: _Sim, packet_id: int) -> None:
        started = sim.inflight.pop(packet_id, None)
        if started is None:
            return
        latency = time.perf_counter() - started
        now = time.time()
        stats = self.stats
        stats.acked += 1
        stats.acks_per_s[int(now - self.t0)] += 1
        if self._m_from <= now < self._m_until:
            stats.acked_in_window += 1
            stats.latency.add(latency)
        mode = self.plan.mode
        if mode is Mode.SATURATE:
            self._fill(sim)
        elif mode is Mode.RATE:
            self._drain_buffer(sim)
        elif mode is Mode.RECONNECT_EACH and sim.proto is not None:
            sim.state = _State.OFFLINE
            sim.proto.disconnect()
            sim.proto = None
            if self._publishing:
                self._schedule_connect(sim, now)

    def _record(self, sim: _Sim, now: float) -> None:
        """A RATE-mode reading falls due: send it, or keep it in the device buffer."""
        reading = self._reading(sim, now)
        online = sim.state is _State.ONLINE and sim.proto is not None
        room = self.plan.qos == 0 or len(sim.inflight) < self.plan.inflight
        if online and not sim.buffer and room and sim.proto is not None and sim.proto.writable:
            self._send(sim, reading, offline=False)
            return
        if len(sim.buffer) == sim.buffer.maxlen:
            self.stats.dropped_readings += 1
        sim.buffer.append((reading, not online))
        if not online:
            self.stats.buffered_offline += 1
        elif sim.proto is not None:
            self._drain_buffer(sim)

    # -- the clock ---------------------------------------------------------------------

    async def _ticker(self) -> None:
        plan = self.plan
        storm_at = None if plan.storm_at is None else self.t0 + plan.storm_at
        next_ping_check = time.time() + PING_CHECK_S
        interval = plan.interval_s
        intended = time.time()
        while True:
            now = time.time()
            self.stats.loop_lag.add(max(0.0, now - intended))
            if storm_at is not None and now >= storm_at:
                storm_at = None
                self._storm(now)
            while self._offline_heap and self._offline_heap[0][0] <= now:
                _, local = heapq.heappop(self._offline_heap)
                self._go_offline(self._sims[local], now)
            heap = self._report_heap
            if self._publishing:
                while heap and heap[0][0] <= now:
                    due, local = heapq.heappop(heap)
                    self._record(self._sims[local], due)
                    heapq.heappush(heap, (due + interval, local))
            if now >= next_ping_check:
                next_ping_check = now + PING_CHECK_S
                idle = now - plan.keepalive_s / 2
                for sim in self._sims:
                    if sim.proto is not None and sim.last_send < idle:
                        sim.proto.ping()
                        sim.last_send = now
            intended = time.time() + TICK_S
            await asyncio.sleep(TICK_S)

    def _go_offline(self, sim: _Sim, now: float) -> None:
        if sim.state is not _State.ONLINE or sim.proto is None:
            return
        self.stats.offline_periods += 1
        sim.state = _State.OFFLINE
        sim.proto.drop()
        self._schedule_connect(sim, now + sim.offline_s)

    def _storm(self, now: float) -> None:
        self.stats.storm_started_at = now
        window = self.plan.storm_window_s
        for sim in self._sims:
            if sim.state is _State.ONLINE and sim.proto is not None:
                sim.state = _State.OFFLINE
                sim.storm_pending = True
                self.stats.storm_dropped += 1
                sim.proto.drop()
                self._schedule_connect(sim, now + self._rng.uniform(0.0, window))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{type(exc).__name__}[{exc.errno}]"
    text = str(exc)
    return f"{type(exc).__name__}: {text[:60]}" if text else type(exc).__name__


async def _sleep_until(at: float) -> None:
    left = at - time.time()
    if left > 0:
        await asyncio.sleep(left)


def run_worker(plan: LoadPlan, worker_index: int, t0: float, emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Run one worker to the end of the plan on a fresh event loop."""
    worker = Worker(plan, worker_index, t0, emit)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(worker.run())
    return worker._result(0)
