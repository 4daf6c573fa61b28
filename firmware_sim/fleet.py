"""A fleet of simulated vehicles on one asyncio event loop.

Each vehicle is a `Firmware` (the model and the contract), an `MqttLink` (its session)
and a report timer (`loop.call_at`, not a task). One small task per vehicle owns its
connection and reconnects with backoff; one task drives keepalive for all links. No
threads are started.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

import msgspec
import structlog

from firmware_sim.cities import get_city
from firmware_sim.config import SimConfig
from firmware_sim.errors import ConfigError, InvalidDelta, SimError
from firmware_sim.faults import FaultInjector
from firmware_sim.firmware import Firmware, Outbound
from firmware_sim.link import BrokerRefused, Endpoint, MqttLink, resolve
from firmware_sim.stats import FleetStats, RateMeter
from firmware_sim.vehicle import Vehicle

log = structlog.get_logger(__name__)

# How long vehicles get to send DISCONNECT on exit before their sockets are closed anyway.
CLOSE_TIMEOUT_S = 2.0
TICK_S = 1.0
# At most one "cannot connect" warning per this many seconds, however many vehicles fail.
FAILURE_LOG_EVERY_S = 10.0


class Fleet:
    """Simulated vehicles connected to an MQTT broker, for as long as the context is open.

    ```python
    async with Fleet(SimConfig(vehicles=50, port=1883)) as fleet:
        async with asyncio.timeout(10):
            await fleet.wait_connected()
        print(fleet.stats())
    ```
    """

    def __init__(self, config: SimConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**32)
        self._rng = random.Random(self.seed)
        self._units: list[_Unit] = []
        self._tasks: asyncio.TaskGroup | None = None
        self._running: list[asyncio.Task[None]] = []
        self._meter = RateMeter()
        self._changed = asyncio.Event()
        self._last_failure_log = -FAILURE_LOG_EVERY_S
        self._last_refusal_log = -FAILURE_LOG_EVERY_S
        self.logins_refused = 0
        self.messages_sent = 0
        self.desired_applied = 0
        self.desired_rejected = 0
        self.commands_answered = 0
        self.connect_failures = 0

    @property
    def vehicle_ids(self) -> list[str]:
        return [unit.firmware.vehicle_id for unit in self._units]

    async def __aenter__(self) -> Self:
        if self._tasks is not None:
            raise RuntimeError("a Fleet can be entered only once")
        cfg = self.config
        endpoints = _endpoints(cfg.host, cfg.port)
        city = get_city(cfg.city)
        now = self.clock()
        for vid in cfg.vehicle_ids():
            vehicle = Vehicle(city, random.Random(f"{self.seed}/{vid}"), now, report_interval_s=cfg.interval_s)
            faults = None
            if cfg.faults or cfg.fault_rate:
                fault_rng = random.Random(f"{self.seed}/{vid}/faults")
                faults = FaultInjector.for_vehicle(vid, fault_rng, now, cfg.faults, cfg.fault_rate)
            firmware = Firmware(
                vid,
                vehicle,
                telemetry_qos=cfg.qos,
                faults=faults,
                command_failure_rate=cfg.command_failure_rate,
                rng=random.Random(f"{self.seed}/{vid}/commands"),
            )
            self._units.append(_Unit(self, firmware, endpoints))

        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        for unit in self._units:
            delay = self._rng.uniform(0.0, cfg.ramp_s)
            self._running.append(self._tasks.create_task(unit.run(delay), name=f"sim {unit.firmware.vehicle_id}"))
        self._running.append(self._tasks.create_task(self._tick(), name="sim keepalive"))
        log.info(
            "simulated fleet starting",
            vehicles=cfg.vehicles,
            broker=f"{cfg.host}:{cfg.port}",
            login="secrets file" if cfg.secrets else "vehicle id only",
            city=city.name,
            seed=self.seed,
            qos=cfg.qos,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._tasks is None:
            return
        for unit in self._units:
            unit.stop_reporting()
        for task in self._running:
            task.cancel()
        # The body's own exception goes to the caller as it is, not wrapped in an ExceptionGroup;
        # a cancellation goes to the task group, which needs it to tell whose it was.
        cancelled = exc_type is not None and issubclass(exc_type, asyncio.CancelledError)
        try:
            await (self._tasks.__aexit__(exc_type, exc, tb) if cancelled else self._tasks.__aexit__(None, None, None))
        finally:
            await self._close_links()
            log.info("simulated fleet stopped", **msgspec.structs.asdict(self.stats()))

    def stats(self) -> FleetStats:
        return FleetStats(
            vehicles=len(self._units),
            connected=self.connected,
            messages_sent=self.messages_sent,
            messages_per_s=round(self._meter.rate(), 1),
            desired_applied=self.desired_applied,
            desired_rejected=self.desired_rejected,
        )

    @property
    def connected(self) -> int:
        return sum(1 for unit in self._units if unit.link.connected)

    def take_offline(self, vehicle_id: str, seconds: float) -> None:
        """Drop one vehicle's link, as lost coverage would, and keep it away for `seconds`."""
        for unit in self._units:
            if unit.firmware.vehicle_id == vehicle_id:
                unit.go_offline(seconds)
                return
        raise KeyError(f"no simulated vehicle {vehicle_id!r}")

    async def wait_connected(self, count: int | None = None) -> None:
        """Wait until `count` vehicles (all by default) are connected; bound it with `asyncio.timeout`."""
        target = len(self._units) if count is None else count
        while self.connected < target:
            self._changed.clear()
            await self._changed.wait()

    # -- for the units -------------------------------------------------------------------

    def sent(self, n: int = 1) -> None:
        self.messages_sent += n
        self._meter.add(n)

    def connection_changed(self) -> None:
        self._changed.set()

    def backoff(self, failures: int) -> float:
        """Seconds before the next attempt: doubling per failure, capped, and jittered so a
        fleet that lost its broker does not return in one burst."""
        cfg = self.config
        delay = min(cfg.reconnect_max_s, cfg.reconnect_min_s * 2.0 ** min(failures, 30))
        return delay * self._rng.uniform(0.5, 1.0)

    def refused_backoff(self, refusals: int) -> float:
        """Seconds before trying a refused login again: long, doubling, capped and jittered."""
        cfg = self.config
        delay = min(cfg.refused_max_s, cfg.refused_min_s * 2.0 ** min(refusals - 1, 30))
        return delay * self._rng.uniform(0.5, 1.0)

    def login_refused(self, vehicle_id: str, error: BaseException) -> None:
        self.logins_refused += 1
        now = time.monotonic()
        if now - self._last_refusal_log >= FAILURE_LOG_EVERY_S:
            self._last_refusal_log = now
            hint = (
                "check the secrets file (fleethub vehicles import --output, or rotate)"
                if self.config.secrets
                else "the hub wants a login: give the vehicles' secrets with --secrets FILE"
            )
            log.warning(
                "the hub refused vehicles' logins; retrying slowly",
                broker=f"{self.config.host}:{self.config.port}",
                vehicle_id=vehicle_id,
                error=str(error),
                hint=hint,
                refused_so_far=self.logins_refused,
                retry_after_s=f"{self.config.refused_min_s:g}-{self.config.refused_max_s:g}",
            )

    def connect_failed(self, vehicle_id: str, error: BaseException) -> None:
        self.connect_failures += 1
        now = time.monotonic()
        if now - self._last_failure_log >= FAILURE_LOG_EVERY_S:
            self._last_failure_log = now
            log.warning(
                "vehicles cannot connect to the broker; retrying with backoff",
                broker=f"{self.config.host}:{self.config.port}",
                vehicle_id=vehicle_id,
                error=str(error) or type(error).__name__,
                failures_so_far=self.connect_failures,
            )

    # -- internals ------------------------------------------------------------------------

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            offline_chance = self.config.offline_rate * TICK_S / 60.0
            for unit in self._units:
                if offline_chance and unit.link.connected and self._rng.random() < offline_chance:
                    unit.go_offline(self.config.offline_s)
                try:
                    unit.link.tick()
                except Exception:
                    log.exception("keepalive failed", vehicle_id=unit.firmware.vehicle_id)
                    unit.link.drop()

    async def _close_links(self) -> None:
        for unit in self._units:
            unit.link.begin_close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                for unit in self._units:
                    await unit.link.wait_closed()
        except TimeoutError:
            log.warning("some vehicles did not disconnect in time; closing their sockets")
        finally:
            for unit in self._units:
                unit.link.drop()


class _Unit:
    """One vehicle on the wire: firmware, MQTT link and report timer."""

    def __init__(self, fleet: Fleet, firmware: Firmware, endpoints: list[Endpoint]) -> None:
        self.fleet = fleet
        self.firmware = firmware
        self._loop = asyncio.get_running_loop()
        self._log = log.bind(vehicle_id=firmware.vehicle_id)
        self.link = MqttLink(
            firmware.vehicle_id,
            endpoints,
            keepalive_s=fleet.config.keepalive_s,
            subscriptions=firmware.subscriptions,
            on_connected=self._connected,
            on_message=self._message,
            password=fleet.config.secrets.get(firmware.vehicle_id),
            birth_and_will=fleet.config.birth_and_will,
        )
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._stopped = False
        self._offline_until = 0.0

    async def run(self, first_delay: float) -> None:
        """Connect after `first_delay`, then stay connected until cancelled."""
        await asyncio.sleep(first_delay)
        self._schedule(self._loop.time() + self.firmware.vehicle.report_interval_s)
        failures = 0
        refusals = 0
        while True:
            # An offline period (no coverage, a parking garage): no connection until it ends.
            await asyncio.sleep(max(0.0, self._offline_until - self._loop.time()))
            try:
                async with asyncio.timeout(self.fleet.config.connect_timeout_s):
                    await self.link.connect()
            except BrokerRefused as exc:
                # Retrying a refused login soon cannot succeed and trips the hub's login back-off.
                refusals += 1
                self.fleet.login_refused(self.firmware.vehicle_id, exc)
                await asyncio.sleep(self.fleet.refused_backoff(refusals))
                continue
            except (OSError, SimError) as exc:
                failures += 1
                self.fleet.connect_failed(self.firmware.vehicle_id, exc)
            except Exception:
                # One vehicle's surprise must not stop the fleet; it retries like any failure.
                failures += 1
                self._log.exception("unexpected error while connecting")
            else:
                failures = 0
                refusals = 0
                await self.link.wait_disconnected()
                self.fleet.connection_changed()
                self._log.debug("disconnected; reconnecting")
            await asyncio.sleep(self.fleet.backoff(failures))

    def go_offline(self, seconds: float) -> None:
        self._offline_until = self._loop.time() + seconds
        self._log.info("going offline", seconds=seconds)
        self.link.drop()

    def stop_reporting(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, due: float) -> None:
        if self._stopped:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._due = due
        self._timer = self._loop.call_at(due, self._report_due)

    def _report_due(self) -> None:
        now = self._loop.time()
        due = self._due + self.firmware.vehicle.report_interval_s
        # A loop that fell behind skips reports instead of sending a burst to catch up.
        self._schedule(due if due > now else now + self.firmware.vehicle.report_interval_s)
        now = self.fleet.clock()
        if self.link.connected and not self.firmware.silent(now):
            self._send(self.firmware.report(now))

    def _send(self, message: Outbound) -> None:
        if self.link.publish(message.topic, message.payload, message.qos):
            self.fleet.sent()

    def _connected(self) -> None:
        self.fleet.connection_changed()
        # Report at once, so the hub sees where the vehicle is as soon as it is back.
        now = self.fleet.clock()
        if not self.firmware.silent(now):
            self._send(self.firmware.report(now))

    def _message(self, topic: str, payload: bytes) -> None:
        if topic != self.firmware.delta_topic:
            self._command(topic, payload)
            return
        interval = self.firmware.vehicle.report_interval_s
        try:
            handled = self.firmware.on_delta(payload, self.fleet.clock())
        except InvalidDelta as exc:
            self._log.warning("ignored a delta", error=str(exc))
            return
        if handled.stale:
            self._log.info("ignored a stale delta", version=handled.version)
            return
        for message in handled.messages:
            self._send(message)
        self.fleet.desired_applied += len(handled.applied)
        self.fleet.desired_rejected += len(handled.rejected)
        if self.firmware.vehicle.report_interval_s != interval:
            self._schedule(self._loop.time() + self.firmware.vehicle.report_interval_s)
        # Deltas are operator actions, rare next to telemetry, and what a demo user watches for.
        self._log.info(
            "desired state handled", version=handled.version, applied=handled.applied, rejected=handled.rejected
        )

    def _command(self, topic: str, payload: bytes) -> None:
        handled = self.firmware.on_command(topic, payload, self.fleet.clock())
        if handled is None:
            self._log.debug("ignored a message on an unexpected topic", topic=topic)
            return
        for message in handled.messages:
            self._send(message)
        self.fleet.commands_answered += 1
        # Commands are operator actions, rare next to telemetry, and what a demo user watches for.
        self._log.info(
            "command handled",
            command_id=handled.command_id,
            name=handled.name,
            status=handled.answer.status,
            detail=handled.answer.detail,
        )


def _endpoints(host: str, port: int) -> list[Endpoint]:
    try:
        endpoints = resolve(host, port)
    except socket.gaierror as exc:
        raise ConfigError(f"setting 'host' must name a reachable MQTT broker; cannot resolve {host!r}: {exc}") from None
    if not endpoints:
        raise ConfigError(f"setting 'host': {host!r} resolved to no addresses")
    return endpoints
