"""One contract for every rules store backend: in memory and SQLite."""

import pytest

from rules import Circle
from rules.alerts import Alert, AlertQuery, AlertState
from rules.definitions import RuleDefinition, Selector
from rules.sqlite_store import SqliteRulesStore
from rules.store import MemoryRulesStore, PendingTimer, RulesWrite, TimerKind
from twin import SqliteStore, StoreError


@pytest.fixture(params=["memory", "sqlite", "sqlite-shared-writer"])
async def store(request, tmp_path):
    if request.param == "memory":
        async with MemoryRulesStore() as memory:
            yield memory
        return
    url = f"sqlite:///{tmp_path}/hub.db"
    async with SqliteStore(url) as twins:
        writer = twins if request.param == "sqlite-shared-writer" else None
        async with SqliteRulesStore(url, writer=writer) as sqlite:
            yield sqlite


def alert(alert_id: str, *, rule="hot", vehicle="v1", state=AlertState.ACTIVE, raised_at=100.0, **kw) -> Alert:
    return Alert(
        id=alert_id,
        rule=rule,
        vehicle_id=vehicle,
        fleet="default",
        severity="critical",
        state=state,
        message="m",
        values={"battery.temp_c": 70},
        since=raised_at,
        raised_at=raised_at,
        updated_at=raised_at,
        **kw,
    )


async def test_rules_and_zones_round_trip(store):
    """Definitions and zones are stored, listed in name order, replaced and deleted."""
    hot = RuleDefinition(name="hot", when="battery.temp_c > 60", for_="30s", selector=Selector(tags={"d": "n"}))
    await store.put_rule(hot)
    await store.put_rule(RuleDefinition(name="cold", when="battery.temp_c < 0"))
    assert [r.name for r in await store.list_rules()] == ["cold", "hot"]
    assert (await store.list_rules())[1] == hot
    assert await store.delete_rule("cold") is True
    assert await store.delete_rule("cold") is False
    await store.put_zone("depot", Circle(lat=1, lon=2, radius_m=3))
    assert await store.list_zones() == {"depot": Circle(lat=1, lon=2, radius_m=3)}
    assert await store.delete_zone("depot") is True
    assert await store.list_zones() == {}


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


async def test_sqlite_rules_store_needs_migrated_database(tmp_path):
    """Opening the SQLite rules store on a database without its tables says how to fix it."""
    with pytest.raises(StoreError, match="fleethub migrate"):
        async with SqliteRulesStore(f"sqlite:///{tmp_path}/empty.db"):
            pass
