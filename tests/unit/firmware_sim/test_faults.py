"""Injected faults: drifting sensors, silence and a jump out of the area, from their start time on."""

import random

from firmware_sim.faults import Fault, FaultInjector, FaultKind


def test_faults_start_at_their_time_and_drift():
    """Before its start a fault changes nothing; after it, temperature rises and pressure falls."""
    faults = [Fault("v", FaultKind.OVERHEAT, 10), Fault("v", FaultKind.TYRE_LEAK, 10), Fault("v", FaultKind.SILENT, 20)]
    injector = FaultInjector(random.Random(1), 100.0, faults)
    first = injector.apply({"gps": {"lat": 1.0, "lon": 2.0}}, 105.0)
    assert not injector.silent(105.0)
    later = [injector.apply({}, 110.0 + i) for i in range(3)]
    assert later[-1]["battery"]["temp_c"] > first["battery"]["temp_c"] + 5
    assert later[-1]["tyres"]["front_left"]["kpa"] < first["tyres"]["front_left"]["kpa"] - 8
    assert injector.silent(120.0)


def test_leave_zone_moves_the_reported_position():
    """Leaving the zone reports a position far from the real one."""
    injector = FaultInjector(random.Random(1), 0.0, [Fault("v", FaultKind.LEAVE_ZONE)])
    moved = injector.apply({"gps": {"lat": 19.4, "lon": -99.1}}, 1.0)
    assert moved["gps"]["lat"] > 19.7


def test_fault_rate_picks_other_vehicles_at_random():
    """With a rate of 1 every vehicle gets one fault; with 0 only listed ones do."""
    always = FaultInjector.for_vehicle("v", random.Random(3), 0.0, [], 1.0)
    assert len(always.kinds) == 1
    listed = FaultInjector.for_vehicle("v", random.Random(3), 0.0, [Fault("w", FaultKind.SILENT)], 0.0)
    assert listed.kinds == set()
