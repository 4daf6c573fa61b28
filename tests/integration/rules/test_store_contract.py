"""One contract for every rules store backend: in memory, SQLite and PostgreSQL."""

import pytest

from kernel import (
    Duplicate,
    PostgresDatabase,
    Sql,
    SqliteDatabase,
    StoreError,
    VehicleIds,
    VehiclePartitions,
    partition_of,
)
from rules import (
    Alert,
    AlertQuery,
    AlertState,
    Circle,
    LatLon,
    MemoryRulesStore,
    PendingTimer,
    Polygon,
    RuleDefinition,
    RulesWrite,
    Severity,
    SqlRulesStore,
    TimerKind,
)
from security import AuditEntry
from twin import VehicleSelector

BACKENDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def store(request, tmp_path):
    if request.param == "memory":
        async with MemoryRulesStore() as memory:
            yield memory
    elif request.param == "sqlite":
        # The database applies the migrations, the rules tables included, when it opens.
        async with SqliteDatabase(f"sqlite:///{tmp_path}/hub.db") as db, SqlRulesStore(db) as sqlite:
            yield sqlite
    else:
        url = request.getfixturevalue("pg_url")
        async with PostgresDatabase(url, pool_min_size=1, pool_max_size=2) as db, SqlRulesStore(db) as postgres:
            yield postgres


def alert(alert_id: str, *, rule="hot", vehicle="v1", state=AlertState.ACTIVE, raised_at=100.0, **kw) -> Alert:
    return Alert(
        id=alert_id,
        rule=rule,
        vehicle_id=vehicle,
        fleet=kw.pop("fleet", "default"),
        severity=kw.pop("severity", "critical"),
        state=state,
        message="m",
        values=kw.pop("values", {"battery.temp_c": 70}),
        since=raised_at,
        raised_at=raised_at,
        updated_at=raised_at,
        **kw,
    )


async def test_rules_and_zones_round_trip(store):
    """Definitions and zones are stored, listed in name order, replaced and deleted."""
    hot = RuleDefinition(name="hot", when="battery.temp_c > 60", for_="30s", selector=VehicleSelector(tags={"d": "n"}))
    await store.put_rule(hot)
    await store.put_rule(RuleDefinition(name="cold", when="battery.temp_c < 0"))
    assert [r.name for r in await store.list_rules()] == ["cold", "hot"]
    assert (await store.list_rules())[1] == hot
    replaced = RuleDefinition(name="hot", when="battery.temp_c > 65", severity=Severity.MAJOR, enabled=False)
    await store.put_rule(replaced)
    assert (await store.list_rules())[1] == replaced
    assert await store.delete_rule("cold") is True
    assert await store.delete_rule("cold") is False
    await store.put_zone("depot", Circle(lat=1, lon=2, radius_m=3))
    area = Polygon(vertices=(LatLon(0.0, 0.0), LatLon(0.0, 1.0), LatLon(1.0, 1.0)))
    await store.put_zone("area", area)
    assert await store.list_zones() == {"area": area, "depot": Circle(lat=1, lon=2, radius_m=3)}
    assert list(await store.list_zones()) == ["area", "depot"]
    await store.put_zone("depot", Circle(lat=1, lon=2, radius_m=30))
    assert (await store.list_zones())["depot"] == Circle(lat=1, lon=2, radius_m=30)
    assert await store.delete_zone("depot") is True
    assert await store.delete_zone("depot") is False
    assert await store.list_zones() == {"area": area}


async def test_reads_for_a_takeover_keep_to_the_chosen_partitions(store):
    """Open alerts, windows and recent clears of the partitions a worker takes over, and no others."""
    vids = [f"veh-{n}" for n in range(24)]
    chosen = VehiclePartitions(frozenset({1, 3}), 4)
    await store.write(
        RulesWrite(
            alerts=[alert(f"open-{v}", vehicle=v) for v in vids]
            + [
                alert(f"done-{v}", vehicle=v, state=AlertState.CLEARED, cleared_at=150.0, cleared_by="condition")
                for v in vids
            ],
            timers=[PendingTimer("hot", v, TimerKind.RAISE, 90.0, 120.0, {}) for v in vids],
        )
    )
    mine = {v for v in vids if partition_of(v, 4) in {1, 3}}
    assert 0 < len(mine) < len(vids)
    assert {a.vehicle_id for a in await store.open_alerts(chosen)} == mine
    assert {t.vehicle_id for t in await store.pending_timers(chosen)} == mine
    assert {a.vehicle_id for a in await store.last_cleared(100.0, chosen)} == mine
    assert len(await store.open_alerts()) == len(vids)


async def test_reads_for_a_rebuild_keep_to_the_chosen_vehicles(store):
    """Open alerts, windows and recent clears of vehicles chosen by id (changed on another node), and no others."""
    vids = [f"veh-{n}" for n in range(12)]
    await store.write(
        RulesWrite(
            alerts=[alert(f"open-{v}", vehicle=v) for v in vids]
            + [
                alert(f"done-{v}", vehicle=v, state=AlertState.CLEARED, cleared_at=150.0, cleared_by="condition")
                for v in vids
            ],
            timers=[PendingTimer("hot", v, TimerKind.RAISE, 90.0, 120.0, {}) for v in vids],
        )
    )
    chosen = VehicleIds(frozenset({"veh-3", "veh-10", "veh-'x"}))
    assert {a.vehicle_id for a in await store.open_alerts(chosen)} == {"veh-3", "veh-10"}
    assert {t.vehicle_id for t in await store.pending_timers(chosen)} == {"veh-3", "veh-10"}
    assert {a.vehicle_id for a in await store.last_cleared(100.0, chosen)} == {"veh-3", "veh-10"}
    assert await store.open_alerts(VehicleIds(frozenset())) == []


async def test_alerts_and_timers_write_and_query(store):
    """Alerts upsert by id and filter by state, rule, vehicle and time; timers upsert and end."""
    timer = PendingTimer("hot", "v2", TimerKind.RAISE, 90.0, 120.0, {"battery.temp_c": 65})
    await store.write(RulesWrite(alerts=[alert("a1"), alert("a2", vehicle="v2", raised_at=200.0)], timers=[timer]))
    assert await store.pending_timers() == [timer]
    cleared = alert("a1", state=AlertState.CLEARED, cleared_at=150.0, cleared_by="condition")
    await store.write(RulesWrite(alerts=[cleared], timers_done=[("hot", "v2")]))
    assert await store.pending_timers() == []
    assert [a.id for a in await store.open_alerts()] == ["a2"]
    assert [a.id for a in await store.query_alerts(AlertQuery())] == ["a2", "a1"]
    assert [a.id for a in await store.query_alerts(AlertQuery(state=AlertState.CLEARED))] == ["a1"]
    assert [a.id for a in await store.query_alerts(AlertQuery(vehicle_id="v2", start=150))] == ["a2"]
    assert await store.query_alerts(AlertQuery(rule="other")) == []
    assert [a.id for a in await store.last_cleared(100.0)] == ["a1"]
    assert await store.last_cleared(151.0) == []
    assert (await store.get_alert("a1")) == cleared
    assert await store.get_alert("zz") is None


async def test_alert_filters_combine_and_limit(store):
    """Severity, open-only, time bounds (end exclusive) and limit filter together, newest first."""
    await store.write(
        RulesWrite(
            alerts=[
                alert("b1", raised_at=100.0, severity="minor"),
                alert("b2", rule="slow", raised_at=200.0, severity="critical"),
                alert("b3", rule="fast", raised_at=300.0, severity="critical", state=AlertState.ACKNOWLEDGED),
                alert("b4", rule="cold", raised_at=400.0, state=AlertState.CLEARED, cleared_at=450.0),
            ]
        )
    )
    ids = [a.id for a in await store.query_alerts(AlertQuery(severity="critical"))]
    assert ids == ["b4", "b3", "b2"]
    assert [a.id for a in await store.query_alerts(AlertQuery(open_only=True))] == ["b3", "b2", "b1"]
    assert [a.id for a in await store.query_alerts(AlertQuery(state=AlertState.ACKNOWLEDGED))] == ["b3"]
    assert [a.id for a in await store.query_alerts(AlertQuery(start=200.0, end=400.0))] == ["b3", "b2"]
    assert [a.id for a in await store.query_alerts(AlertQuery(limit=2))] == ["b4", "b3"]
    assert [a.id for a in await store.query_alerts(AlertQuery(severity="minor", rule="hot", vehicle_id="v1"))] == ["b1"]
    assert sorted(a.id for a in await store.open_alerts()) == ["b1", "b2", "b3"]


async def test_alerts_are_listed_by_fleet_scope(store):
    """A caller's fleets limit the list; an empty scope sees nothing, no scope sees all."""
    await store.write(
        RulesWrite(
            alerts=[
                alert("f1", vehicle="v1", fleet="acme", raised_at=100.0),
                alert("f2", vehicle="v2", fleet="globex", raised_at=200.0),
                alert("f3", vehicle="v3", fleet="default", raised_at=300.0),
            ]
        )
    )
    assert [a.id for a in await store.query_alerts(AlertQuery(fleets=("acme",)))] == ["f1"]
    assert [a.id for a in await store.query_alerts(AlertQuery(fleets=("acme", "default")))] == ["f3", "f1"]
    assert await store.query_alerts(AlertQuery(fleets=())) == []
    assert [a.id for a in await store.query_alerts(AlertQuery())] == ["f3", "f2", "f1"]


async def test_alert_documents_round_trip_whole(store):
    """Every alert field comes back as written: nested and unicode values, ack and clear details."""
    full = alert(
        "c1",
        values={"gps": {"lat": 19.43, "lon": -99.13}, "name": "Dépôt ☃", "n": None, "ok": True, "big": 2**53},
        state=AlertState.CLEARED,
        acknowledged_at=110.5,
        acknowledged_by="maria",
        note="on it — really",
        cleared_at=120.25,
        cleared_by="ops",
        clear_values={"battery.temp_c": 41.5},
        clear_note="sensor fault",
    )
    await store.write(RulesWrite(alerts=[full]))
    assert await store.get_alert("c1") == full
    assert await store.query_alerts(AlertQuery(vehicle_id="v1")) == [full]


async def test_last_cleared_keeps_the_newest_clear_per_rule_and_vehicle(store):
    """After several clears of one rule and vehicle, only the newest counts for its cooldown."""
    await store.write(
        RulesWrite(
            alerts=[
                alert("d1", raised_at=10.0, state=AlertState.CLEARED, cleared_at=20.0),
                alert("d2", raised_at=30.0, state=AlertState.CLEARED, cleared_at=40.0),
                alert("d3", vehicle="v2", raised_at=30.0, state=AlertState.CLEARED, cleared_at=35.0),
            ]
        )
    )
    newest = {(a.rule, a.vehicle_id): a.id for a in await store.last_cleared(0.0)}
    assert newest == {("hot", "v1"): "d2", ("hot", "v2"): "d3"}


async def test_a_clear_and_a_new_alert_of_one_rule_and_vehicle_in_one_write(store):
    """A clear and the next alert for the same rule and vehicle land together: one stays open."""
    await store.write(RulesWrite(alerts=[alert("e1", raised_at=10.0)]))
    await store.write(
        RulesWrite(
            alerts=[
                alert("e1", raised_at=10.0, state=AlertState.CLEARED, cleared_at=20.0),
                alert("e2", raised_at=21.0),
            ]
        )
    )
    assert [a.id for a in await store.open_alerts()] == ["e2"]


async def test_timers_replace_end_and_go_with_their_rule(store):
    """A timer restarted in the batch that ended it stays; deleting a rule drops its timers."""
    first = PendingTimer("hot", "v1", TimerKind.RAISE, 10.0, 40.0, {"x": 1})
    other = PendingTimer("cold", "v1", TimerKind.CLEAR, 12.5, 72.5, {})
    await store.write(RulesWrite(timers=[first, other]))
    restarted = PendingTimer("hot", "v1", TimerKind.CLEAR, 50.123456789, 110.987654321, {"x": [1, 2]})
    await store.write(RulesWrite(timers=[restarted], timers_done=[("hot", "v1")]))
    timers = sorted(await store.pending_timers(), key=lambda t: t.rule)
    assert timers == [other, restarted]
    await store.put_rule(RuleDefinition(name="cold", when="battery.temp_c < 0"))
    assert await store.delete_rule("cold") is True
    assert await store.pending_timers() == [restarted]


async def test_an_empty_write_is_a_no_op(store):
    """Nothing to persist writes nothing and fails nothing."""
    await store.write(RulesWrite())
    assert await store.pending_timers() == []
    assert await store.open_alerts() == []


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_the_database_keeps_one_open_alert_per_rule_and_vehicle(backend, request, tmp_path):
    """The database itself refuses a second open alert for one rule and vehicle."""
    if backend == "sqlite":
        db = SqliteDatabase(f"sqlite:///{tmp_path}/hub.db")
    else:
        db = PostgresDatabase(request.getfixturevalue("pg_url"), pool_min_size=1, pool_max_size=2)
    async with db, SqlRulesStore(db) as store:
        await store.write(RulesWrite(alerts=[alert("f1")]))
        with pytest.raises(Duplicate):
            await store.write(RulesWrite(alerts=[alert("f2", raised_at=101.0)]))
        assert [a.id for a in await store.open_alerts()] == ["f1"]
        await store.write(RulesWrite(alerts=[alert("f1", state=AlertState.CLEARED), alert("f2", raised_at=101.0)]))
        assert [a.id for a in await store.open_alerts()] == ["f2"]


async def _audit_ids(store) -> set[str]:
    if isinstance(store, MemoryRulesStore):
        return {e.id for e in store.audit}
    return {row[0] for row in await Sql(store.db).fetch("SELECT id FROM audit_log")}


def _entry(entry_id: str) -> AuditEntry:
    return AuditEntry(entry_id, 100.0, "alice", "rule.put", "127.0.0.1:1", target="hot", detail={"created": True})


# What each backend raises for a duplicate audit id (`kernel.Duplicate` is one).
_REFUSED = StoreError


async def test_a_change_and_its_audit_entry_commit_together(store):
    """Rule, zone and alert writes store their audit entries with them; a refused entry undoes its change."""
    await store.put_rule(RuleDefinition(name="hot", when="battery.temp_c > 60"), audit=_entry("e1"))
    await store.put_zone("depot", Circle(lat=1, lon=2, radius_m=3), audit=_entry("e2"))
    await store.write(RulesWrite(alerts=[alert("a1")], audit=[_entry("e3")]))
    await store.delete_zone("depot", audit=_entry("e4"))
    assert await _audit_ids(store) == {"e1", "e2", "e3", "e4"}
    with pytest.raises(_REFUSED):
        await store.put_rule(RuleDefinition(name="cold", when="battery.temp_c < 0"), audit=_entry("e1"))
    with pytest.raises(_REFUSED):
        await store.write(RulesWrite(alerts=[alert("a2")], audit=[_entry("e2")]))
    with pytest.raises(_REFUSED):
        await store.delete_rule("hot", audit=_entry("e3"))
    assert [r.name for r in await store.list_rules()] == ["hot"]
    assert await store.get_alert("a2") is None
    assert await store.get_alert("a1") is not None
    assert await _audit_ids(store) == {"e1", "e2", "e3", "e4"}


async def test_change_alert_writes_only_over_an_expected_state(store):
    """A node that does not run the vehicle's rules changes an alert only while it is as it read it."""
    await store.write(RulesWrite(alerts=[alert("a1")]))
    acked = alert("a1", state=AlertState.ACKNOWLEDGED, acknowledged_by="dispatch")
    assert await store.change_alert(acked, [AlertState.ACTIVE], audit=_entry("e1")) is True
    assert (await store.get_alert("a1")) == acked
    assert await _audit_ids(store) == {"e1"}
    # Someone changed it first: nothing written, the entry neither.
    cleared = alert("a1", state=AlertState.CLEARED, cleared_at=200.0, cleared_by="x")
    assert await store.change_alert(cleared, [AlertState.ACTIVE], audit=_entry("e2")) is False
    assert (await store.get_alert("a1")).state is AlertState.ACKNOWLEDGED
    assert await _audit_ids(store) == {"e1"}
    assert await store.change_alert(cleared, [AlertState.ACTIVE, AlertState.ACKNOWLEDGED]) is True
    assert [a.id for a in await store.open_alerts()] == []
    assert await store.change_alert(alert("nope"), [AlertState.ACTIVE]) is False
