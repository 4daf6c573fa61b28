"""The rules engine over the in-memory rules and twin stores, driven by a fake clock."""

import msgspec
import pytest

from kernel import NotFound
from rules import (
    AlertNotOpen,
    Circle,
    MemoryRulesStore,
    RuleDefinition,
    RulesEngine,
    Severity,
    TimerKind,
    parse_rules_toml,
)
from rules.timers import TimerHeap
from twin import MemoryStore, TwinState, TwinUpdate, UpdateKind, VehicleSelector, apply_reported, flatten
from twin.model import Connection


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Published:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        assert qos == 1
        self.events.append((topic, msgspec.json.decode(payload)))

    def kinds(self) -> list[str]:
        return [event["event"] for _, event in self.events]


class Vehicle:
    """A twin and the updates the twin service would report for it."""

    def __init__(self, vehicle_id: str = "v1", clock: Clock | None = None, **kw) -> None:
        self.state = TwinState(vehicle_id, 0.0, 0.0, **kw)
        self.clock = clock
        self.last = 0.0

    def update(self, data: dict, ts: float | None = None) -> TwinUpdate:
        # Device time follows the clock but always moves on, as it does between two messages.
        at = ts if ts is not None else max(self.clock.now if self.clock else 0.0, self.last + 0.001)
        self.last = at
        change = apply_reported(self.state, flatten(data), at)
        return TwinUpdate(
            UpdateKind.TELEMETRY, self.state.vehicle_id, self.state, at, tuple(change.changed), change.previous
        )

    def presence(self, connected: bool, at: float) -> TwinUpdate:
        """The update the twin service reports when the vehicle connects or goes away."""
        self.state.connection = Connection(connected=connected, since=at, last_seen=at)
        kind = UpdateKind.CONNECTED if connected else UpdateKind.DISCONNECTED
        return TwinUpdate(kind, self.state.vehicle_id, self.state, at)


def rule(name: str = "hot", when: str = "battery.temp_c > 60", **kw) -> RuleDefinition:
    return RuleDefinition(name=name, when=when, **kw)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rules_store() -> MemoryRulesStore:
    return MemoryRulesStore()


@pytest.fixture
async def twins():
    async with MemoryStore() as store:
        yield store


def engine_for(rules_store, twins, clock, *definitions, published=None) -> RulesEngine:
    zones = {"depot": Circle(lat=1.0, lon=2.0, radius_m=100)}
    return RulesEngine(
        rules_store, twins, publisher=published, clock=clock, file_rules=list(definitions), file_zones=zones
    )


async def test_only_rules_reading_a_changed_field_are_evaluated(rules_store, twins, clock):
    """An update is evaluated only against rules whose field paths overlap what it changed."""
    engine = engine_for(
        rules_store, twins, clock, rule("hot"), rule("low", "soc < 15"), rule("near", 'inside("depot")')
    )
    async with engine:
        car = Vehicle(clock=clock)
        engine.twin_updated([car.update({"soc": 50})])
        assert engine.core.evaluations == 1
        engine.twin_updated([car.update({"battery": {"temp_c": 20, "volts": 400}})])
        assert engine.core.evaluations == 2
        engine.twin_updated([car.update({"gps": {"lat": 1.0, "lon": 2.0}})])
        assert engine.core.evaluations == 3
        engine.twin_updated([car.update({"odometer": 12})])
        assert engine.core.evaluations == 3


async def test_alert_lifecycle_is_persisted_and_published_in_order(rules_store, twins, clock):
    """Raise, acknowledge and clear each land in the store and then on the alert topic."""
    published = Published()
    async with engine_for(rules_store, twins, clock, rule(severity=Severity.CRITICAL), published=published) as engine:
        car = Vehicle(clock=clock)
        engine.twin_updated([car.update({"battery": {"temp_c": 70}})])
        await engine.flush()
        alert = engine.core.open_alert("hot", "v1")
        assert alert is not None
        assert rules_store.alerts[alert.id].state.value == "active"
        await engine.acknowledge(alert.id, "maria", "checking")
        engine.twin_updated([car.update({"battery": {"temp_c": 30}})])
        await engine.flush()
    assert published.kinds() == ["raised", "acknowledged", "cleared"]
    assert {topic for topic, _ in published.events} == {"alerts/default/critical/hot/v1"}
    stored = rules_store.alerts[alert.id]
    assert (stored.state.value, stored.acknowledged_by, stored.cleared_by) == ("cleared", "maria", "condition")


async def test_one_open_alert_per_rule_and_vehicle(rules_store, twins, clock):
    """A condition that keeps holding raises one alert, not one per update."""
    published = Published()
    async with engine_for(rules_store, twins, clock, rule(), published=published) as engine:
        car = Vehicle(clock=clock)
        for temp in (61, 65, 70, 90):
            engine.twin_updated([car.update({"battery": {"temp_c": temp}})])
            clock.now += 1
        await engine.flush()
    assert published.kinds() == ["raised"]


async def test_for_window_fires_from_the_timer_heap(rules_store, twins, clock):
    """A `for` window raises when its deadline passes and not before; breaking it cancels it."""
    published = Published()
    async with engine_for(rules_store, twins, clock, rule(for_="10s"), published=published) as engine:
        car = Vehicle(clock=clock)
        engine.twin_updated([car.update({"battery": {"temp_c": 70}})])
        await engine.flush()
        assert [(t.kind, t.due) for t in rules_store.timers.values()] == [(TimerKind.RAISE, 1010.0)]
        clock.now = 1009.0
        await engine.run_due()
        await engine.flush()
        assert published.kinds() == []
        clock.now = 1010.0
        await engine.run_due()
        await engine.flush()
        assert published.kinds() == ["raised"]
        assert published.events[0][1]["since"] < published.events[0][1]["raised_at"]
        assert rules_store.timers == {}

        other = Vehicle("v2", clock=clock)
        engine.twin_updated([other.update({"battery": {"temp_c": 70}})])
        clock.now += 5
        engine.twin_updated([other.update({"battery": {"temp_c": 40}})])
        clock.now += 10
        await engine.run_due()
        await engine.flush()
        assert published.kinds() == ["raised"]
        assert rules_store.timers == {}


async def test_clear_for_gives_hysteresis(rules_store, twins, clock):
    """With `clear_when` and `clear_for`, an alert clears only after the clear condition held that long."""
    definition = rule(clear_when="battery.temp_c < 50", clear_for="5s")
    published = Published()
    async with engine_for(rules_store, twins, clock, definition, published=published) as engine:
        car = Vehicle(clock=clock)
        engine.twin_updated([car.update({"battery": {"temp_c": 70}})])
        clock.now += 1
        engine.twin_updated([car.update({"battery": {"temp_c": 55}})])
        engine.twin_updated([car.update({"battery": {"temp_c": 45}})])
        clock.now += 3
        engine.twin_updated([car.update({"battery": {"temp_c": 52}})])
        clock.now += 10
        await engine.run_due()
        engine.twin_updated([car.update({"battery": {"temp_c": 40}})])
        clock.now += 5
        await engine.run_due()
        await engine.flush()
    assert published.kinds() == ["raised", "cleared"]
    # The first clear window (from 1001) broke at 1004; the second ran from 1014 to 1019.
    assert published.events[1][1]["cleared_at"] == "1970-01-01T00:16:59.000Z"


async def test_cooldown_defers_the_next_alert_until_it_ends(rules_store, twins, clock):
    """Within `cooldown` of a clear no alert is raised; when it ends a holding condition alerts."""
    published = Published()
    async with engine_for(rules_store, twins, clock, rule(cooldown="1m"), published=published) as engine:
        car = Vehicle(clock=clock)
        engine.twin_updated([car.update({"battery": {"temp_c": 70}})])
        engine.twin_updated([car.update({"battery": {"temp_c": 30}})])
        clock.now += 10
        engine.twin_updated([car.update({"battery": {"temp_c": 80}})])
        await engine.run_due()
        await engine.flush()
        assert published.kinds() == ["raised", "cleared"]
        clock.now = 1060.0
        await engine.run_due()
        await engine.flush()
    assert published.kinds() == ["raised", "cleared", "raised"]


async def test_each_update_of_a_batch_sees_its_own_previous_values(rules_store, twins, clock):
    """Two updates of one vehicle in one batch are evaluated with their own values and deltas."""
    published = Published()
    definition = rule("drop", "delta(tyre.kpa) < -10", message="from {tyre.kpa}")
    async with engine_for(rules_store, twins, clock, definition, published=published) as engine:
        car = Vehicle(clock=clock)
        engine.twin_updated([car.update({"tyre": {"kpa": 220}}, ts=1)])
        first = car.update({"tyre": {"kpa": 200}}, ts=2)
        second = car.update({"tyre": {"kpa": 199}}, ts=3)
        engine.twin_updated([first, second])
        await engine.flush()
    # The first update dropped 20 (raised, reading 200); the second only 1 (cleared).
    assert published.kinds() == ["raised", "cleared"]
    assert published.events[0][1]["message"] == "from 200"


async def test_no_data_for_is_rechecked_at_its_threshold(rules_store, twins, clock):
    """A `no_data_for` rule is re-checked at last report + threshold, never by a periodic scan."""
    published = Published()
    definition = rule("silent", 'no_data_for("gps") > 5m')
    async with engine_for(rules_store, twins, clock, definition, published=published) as engine:
        car = Vehicle(clock=clock)
        engine.twin_updated([car.update({"gps": {"lat": 1.0, "lon": 2.0}})])
        assert engine.core.next_deadline() == pytest.approx(1300.0, abs=0.01)
        clock.now = 1200.0
        engine.twin_updated([car.update({"gps": {"lat": 1.0, "lon": 2.1}})])
        # The earlier deadline stays; when it passes, the rule is re-checked and moves on.
        assert engine.core.next_deadline() == pytest.approx(1300.0, abs=0.01)
        clock.now = 1300.5
        await engine.run_due()
        assert engine.core.next_deadline() == pytest.approx(1500.0, abs=0.01)
        clock.now = 1501.0
        await engine.run_due()
        await engine.flush()
        assert published.kinds() == ["raised"]
        assert engine.core.next_deadline() is None
        engine.twin_updated([car.update({"gps": {"lat": 1.0, "lon": 2.2}})])
        await engine.flush()
    assert published.kinds() == ["raised", "cleared"]


async def test_restart_restores_windows_and_alerts_without_double_firing(rules_store, twins, clock):
    """A new engine on the same store finishes a pending window once and keeps open alerts open."""
    first = Published()
    definitions = [rule("slow", for_="30s"), rule("fast")]
    car = Vehicle(clock=clock)
    async with engine_for(rules_store, twins, clock, *definitions, published=first) as engine:
        engine.twin_updated([car.update({"battery": {"temp_c": 70}})])
        await engine.flush()
    assert first.kinds() == ["raised"]
    await twins.write_batch([car.state], [])

    second = Published()
    clock.now += 10
    async with engine_for(rules_store, twins, clock, *definitions, published=second) as engine:
        engine.twin_updated([car.update({"battery": {"temp_c": 75}})])
        clock.now = 1030.0
        await engine.run_due()
        await engine.flush()
        assert [(e["rule"], e["event"]) for _, e in second.events] == [("slow", "raised")]
        assert second.events[0][1]["since"] == first.events[0][1]["since"]
    assert len(rules_store.alerts) == 2
    assert rules_store.timers == {}


async def test_manual_clear_and_acknowledge_errors(rules_store, twins, clock):
    """Acknowledging twice or clearing a cleared alert is refused; both notes are kept; unknown ids are not found."""
    async with engine_for(rules_store, twins, clock, rule()) as engine:
        engine.twin_updated([Vehicle(clock=clock).update({"battery": {"temp_c": 70}})])
        alert = engine.core.open_alert("hot", "v1")
        assert alert is not None
        await engine.acknowledge(alert.id, "a", "looking")
        with pytest.raises(AlertNotOpen):
            await engine.acknowledge(alert.id, "b")
        cleared = await engine.clear(alert.id, "b", "false alarm")
        assert (cleared.state.value, cleared.cleared_by, cleared.clear_note) == ("cleared", "b", "false alarm")
        assert (cleared.acknowledged_by, cleared.note) == ("a", "looking")
        with pytest.raises(AlertNotOpen):
            await engine.clear(alert.id, "b")
        with pytest.raises(NotFound):
            await engine.acknowledge("nope", "a")


async def test_selector_and_disabled_rules(rules_store, twins, clock):
    """A rule applies only to vehicles its selector admits, and a disabled rule to none."""
    published = Published()
    definitions = [
        rule("north", selector=VehicleSelector(fleet="rent", tags={"depot": "north"})),
        rule("off", enabled=False),
        rule("picked", selector=VehicleSelector(vehicle_ids=("s",))),
    ]
    async with engine_for(rules_store, twins, clock, *definitions, published=published) as engine:
        north = Vehicle("n", clock=clock, fleet="rent", tags={"depot": "north"})
        south = Vehicle("s", clock=clock, fleet="rent", tags={"depot": "south"})
        engine.twin_updated([north.update({"battery": {"temp_c": 70}}), south.update({"battery": {"temp_c": 70}})])
        await engine.flush()
    assert sorted((e["rule"], e["vehicle_id"]) for _, e in published.events) == [("north", "n"), ("picked", "s")]
    assert "alerts/rent/warning/north/n" in [topic for topic, _ in published.events]


def test_rules_toml_parses_rules_and_zones():
    """A rules file gives definitions with durations and zones."""
    definitions, zones = parse_rules_toml(
        """
[rules.hot]
when = "battery.temp_c > 60"
for = "30s"
cooldown = 600
[zones.depot]
kind = "circle"
lat = 1
lon = 2
radius_m = 50
"""
    )
    assert [(d.name, d.for_, d.cooldown) for d in definitions] == [("hot", "30s", 600)]
    assert list(zones) == ["depot"]


def test_timer_heap_replaces_cancels_and_pops_in_order():
    """Rescheduling replaces a key's deadline; cancelled keys never pop; due keys pop earliest first."""
    heap: TimerHeap[str] = TimerHeap()
    heap.schedule("a", 5)
    heap.schedule("b", 3)
    heap.schedule("a", 1)
    heap.schedule("c", 4)
    heap.cancel("c")
    assert heap.next_deadline() == 1
    assert heap.pop_due(4) == [(1, "a"), (3, "b")]
    assert len(heap) == 0
    assert heap.next_deadline() is None


async def test_connected_is_evaluated_on_presence_changes_not_on_a_timer(rules_store, twins, clock):
    """`not connected()` with `for` starts its window on a disconnect, ends it on a reconnect, and never polls."""
    published = Published()
    definition = rule("offline", "not connected()", for_="30s")
    async with engine_for(rules_store, twins, clock, definition, published=published) as engine:
        car = Vehicle(clock=clock)
        engine.twin_updated([car.update({"soc": 50}), car.presence(True, clock.now)])
        assert engine.core.next_deadline() is None
        clock.now += 5
        engine.twin_updated([car.presence(False, clock.now)])
        assert engine.core.next_deadline() == pytest.approx(clock.now + 30)
        clock.now += 10
        engine.twin_updated([car.presence(True, clock.now)])
        assert engine.core.next_deadline() is None
        clock.now += 5
        engine.twin_updated([car.presence(False, clock.now)])
        await engine.flush()
        assert rules_store.timers[("offline", "v1")].kind is TimerKind.RAISE
        clock.now += 31
        await engine.run_due()
        await engine.flush()
        assert published.kinds() == ["raised"]
        # Telemetry does not touch a rule that reads only the connection.
        evaluations = engine.core.evaluations
        engine.twin_updated([car.update({"soc": 49})])
        assert engine.core.evaluations == evaluations
        engine.twin_updated([car.presence(True, clock.now)])
        await engine.flush()
        assert engine.core.next_deadline() is None
    assert published.kinds() == ["raised", "cleared"]


async def test_operator_writes_evaluate_only_rules_reading_what_they_patched(rules_store, twins, clock):
    """A desired or tags patch evaluates only the rules reading those paths (or selecting on those tags)."""
    definitions = [
        rule("limit", "desired.charge_limit < 50"),
        rule("interval", "desired.config.report_interval_s > 60"),
        rule("depot", 'tags.depot == "north"'),
        rule("model", 'tags.model == "x"'),
        rule("north", "soc < 15", selector=VehicleSelector(tags={"depot": "north"})),
        rule("fleet", "soc < 15", selector=VehicleSelector(fleet="f1")),
        rule("plain", "soc < 15"),
    ]
    async with engine_for(rules_store, twins, clock, *definitions) as engine:
        car = Vehicle(clock=clock)
        engine.twin_updated([car.update({"soc": 50})])

        def evaluated(kind: UpdateKind, *changed: tuple[str, ...]) -> int:
            before = engine.core.evaluations
            engine.twin_updated([TwinUpdate(kind, "v1", car.state, clock.now, changed)])
            return engine.core.evaluations - before

        assert evaluated(UpdateKind.DESIRED, ("charge_limit",)) == 1
        assert evaluated(UpdateKind.DESIRED, ("config",)) == 1
        assert evaluated(UpdateKind.DESIRED, ("unrelated",)) == 0
        assert evaluated(UpdateKind.TAGS, ("depot",)) == 2
        assert evaluated(UpdateKind.TAGS, ("model",)) == 1
        assert evaluated(UpdateKind.TAGS, ("colour",)) == 0
        # An update that names no paths may have touched anything, the fleet included.
        assert evaluated(UpdateKind.DESIRED) == 2
        assert evaluated(UpdateKind.TAGS) == 4
