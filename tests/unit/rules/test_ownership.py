"""A rules engine that runs only for the vehicles its hub worker owns, and takes vehicles over from the store."""

from rules import MemoryRulesStore
from tests.unit.rules.test_engine import Clock, Published, Vehicle, engine_for, rule
from twin import MemoryStore


async def test_updates_and_alerts_of_vehicles_owned_elsewhere_are_ignored() -> None:
    """Only the owned vehicle's update raises an alert; the other's is left to its owner."""
    clock, store, published = Clock(), MemoryRulesStore(), Published()
    async with MemoryStore() as twins, engine_for(store, twins, clock, rule(), published=published) as engine:
        engine.owns = {"mine"}.__contains__
        mine, theirs = Vehicle("mine", clock=clock), Vehicle("theirs", clock=clock)
        engine.twin_updated([mine.update({"battery": {"temp_c": 70}}), theirs.update({"battery": {"temp_c": 70}})])
        await engine.flush()
    assert [a.vehicle_id for a in store.alerts.values()] == ["mine"]
    assert published.kinds() == ["raised"]


async def test_a_takeover_rebuilds_open_alerts_and_windows_from_the_store() -> None:
    """The previous owner's open alert and pending `for` window come back; nothing is raised twice."""
    clock, store = Clock(), MemoryRulesStore()
    definitions = (rule(), rule("slow-hot", "battery.temp_c > 50", for_="30s"))
    async with MemoryStore() as twins:
        # The previous owner: an open alert for one rule and a window started for the other.
        async with engine_for(store, twins, clock, *definitions) as before:
            car = Vehicle("car", clock=clock)
            before.twin_updated([car.update({"battery": {"temp_c": 70}})])
            await before.flush()
        published = Published()
        async with engine_for(store, twins, clock, *definitions, published=published) as after:
            after.owns = set[str]().__contains__
            after.release(lambda _vid: True)
            assert after.core.open_alert("hot", "car") is None
            after.owns = {"car"}.__contains__
            await after.adopt({"car"}.__contains__)
            assert after.core.open_alert("hot", "car") is not None
            assert after.core.pending("slow-hot", "car") is not None
            # The condition still holds: no second alert for the open episode.
            after.twin_updated([car.update({"battery": {"temp_c": 75}})])
            clock.now += 31
            await after.run_due()
            await after.flush()
        assert sorted(published.kinds()) == ["raised"]  # only the window's alert, once
        assert sorted(a.rule for a in store.alerts.values()) == ["hot", "slow-hot"]
