"""A simulated fleet against a real Mosquitto broker."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import uuid
from pathlib import Path

import pytest

from firmware_sim import Fleet, SimConfig
from tests.integration.firmware_sim.harness import Mosquitto, eventually, free_port, recording

TELEMETRY_FIELDS = {
    "ts", "seq", "gps", "speed", "heading", "soc", "charging", "odometer_km",
    "ignition", "doors", "charge_limit", "config",
}  # fmt: skip


def _open_fds() -> int:
    # Sockets of earlier tests' objects close when collected; collect first so counts compare.
    gc.collect()
    return len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").exists() else 0


def _config(port: int, *, vehicles: int = 5, qos: int = 1, ramp_s: float = 0.3) -> SimConfig:
    return SimConfig(
        vehicles=vehicles,
        interval_s=0.2,
        port=port,
        qos=qos,
        prefix=f"t{uuid.uuid4().hex[:6]}-",
        seed=7,
        ramp_s=ramp_s,
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
    )


async def test_fleet_reports_and_applies_desired_state(mosquitto: Mosquitto) -> None:
    """Five vehicles report full telemetry; one applies a delta, reports it, and rejects what it cannot apply."""
    threads = threading.active_count()
    config = _config(mosquitto.port)
    vids = config.vehicle_ids()
    target = vids[2]
    with recording(mosquitto.port, "vehicles/+/telemetry", "vehicles/+/twin/rejected") as recorder:
        fds = _open_fds()
        async with Fleet(config) as fleet:
            assert fleet.vehicle_ids == vids
            async with asyncio.timeout(10):
                await fleet.wait_connected()
            await eventually(lambda: all(recorder.on(f"vehicles/{v}/telemetry") for v in vids), what="telemetry")
            for vid in vids:
                report = recorder.on(f"vehicles/{vid}/telemetry")[-1]
                assert set(report) == TELEMETRY_FIELDS
                assert set(report["gps"]) == {"lat", "lon"}
                assert report["config"]["report_interval_s"] == 0.2

            delta = {"charge_limit": 55, "config": {"report_interval_s": 1}, "doors": {"locked": False}}
            recorder.publish(f"vehicles/{target}/twin/delta", {"version": 3, "delta": delta})
            await eventually(
                lambda: any(r["charge_limit"] == 55 for r in recorder.on(f"vehicles/{target}/telemetry")),
                what="the new charge limit reported",
            )
            applied = next(r for r in recorder.on(f"vehicles/{target}/telemetry") if r["charge_limit"] == 55)
            assert applied["config"] == {"report_interval_s": 1}
            assert applied["doors"] == {"locked": False}

            bad = {"charge_limit": 120, "config": {"report_interval_s": 0}, "wipers": "on"}
            recorder.publish(f"vehicles/{target}/twin/delta", {"version": 4, "delta": bad})
            await eventually(lambda: recorder.on(f"vehicles/{target}/twin/rejected"), what="a rejection")
            [rejection] = recorder.on(f"vehicles/{target}/twin/rejected")
            assert set(rejection) == {"charge_limit", "config.report_interval_s", "wipers"}
            assert "120" in rejection["charge_limit"]
            assert recorder.on(f"vehicles/{target}/telemetry")[-1]["charge_limit"] == 55

            await eventually(
                lambda: all(len(recorder.on(f"vehicles/{v}/telemetry")) >= 3 for v in vids),
                what="periodic telemetry from every vehicle",
            )
            stats = fleet.stats()
            assert stats.vehicles == stats.connected == 5
            assert stats.desired_applied == 3
            assert stats.desired_rejected == 3
            assert stats.messages_sent >= len(recorder.messages)
            assert stats.messages_per_s > 0
        assert fleet.stats().connected == 0
        assert _open_fds() == fds
    assert threading.active_count() == threads


@pytest.mark.parametrize("qos", [0, 1])
async def test_telemetry_uses_the_configured_qos(mosquitto: Mosquitto, qos: int) -> None:
    """Telemetry is published with the QoS the fleet was configured with."""
    config = _config(mosquitto.port, vehicles=2, qos=qos)
    with recording(mosquitto.port, "vehicles/+/telemetry") as recorder:
        async with Fleet(config):
            await eventually(lambda: len(recorder.messages) >= 4, what="telemetry")
        assert {message_qos for _, message_qos, _ in recorder.messages} == {qos}


async def test_vehicles_reconnect_after_the_broker_restarts(mosquitto: Mosquitto) -> None:
    """When the broker goes away and comes back, vehicles reconnect, resubscribe and obey deltas again."""
    config = _config(mosquitto.port, vehicles=3)
    async with Fleet(config) as fleet:
        async with asyncio.timeout(10):
            await fleet.wait_connected()
        mosquitto.stop()
        await eventually(lambda: fleet.connected == 0, what="all disconnected")
        await asyncio.sleep(0.5)
        mosquitto.start()
        async with asyncio.timeout(15):
            await fleet.wait_connected()
        vid = config.vehicle_ids()[0]
        # This broker keeps no sessions across a restart, so only a fresh SUBSCRIBE brings the delta.
        with recording(mosquitto.port, f"vehicles/{vid}/telemetry") as recorder:
            recorder.publish(f"vehicles/{vid}/twin/delta", {"version": 1, "delta": {"charge_limit": 51}})
            await eventually(
                lambda: any(r["charge_limit"] == 51 for r in recorder.on(f"vehicles/{vid}/telemetry")),
                what="the delta applied after reconnecting",
            )


async def test_a_missing_broker_is_retried_and_the_fleet_still_stops_cleanly() -> None:
    """With nothing listening the vehicles keep retrying with backoff; leaving the context stops them all."""
    threads, fds = threading.active_count(), _open_fds()
    async with Fleet(_config(free_port(), vehicles=4, ramp_s=0.0)) as fleet:
        await eventually(lambda: fleet.connect_failures >= 8, what="repeated connection attempts")
        assert fleet.stats().connected == 0
    assert threading.active_count() == threads
    assert _open_fds() == fds


async def test_an_error_in_the_body_reaches_the_caller_unwrapped() -> None:
    """An exception raised inside `async with Fleet` comes out as itself, after the fleet stopped."""
    threads = threading.active_count()

    async def fail_inside() -> None:
        async with Fleet(_config(free_port(), vehicles=2, ramp_s=0.0)):
            await asyncio.sleep(0.1)
            raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        await fail_inside()
    assert threading.active_count() == threads


async def test_cancelling_the_owner_stops_the_fleet(mosquitto: Mosquitto) -> None:
    """A task running a fleet can be cancelled; the fleet disconnects and the cancellation propagates."""
    entered = asyncio.Event()
    fleets: list[Fleet] = []

    async def run() -> None:
        async with Fleet(_config(mosquitto.port, vehicles=3)) as fleet:
            fleets.append(fleet)
            await fleet.wait_connected()
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(run())
    async with asyncio.timeout(10):
        await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fleets[0].connected == 0
