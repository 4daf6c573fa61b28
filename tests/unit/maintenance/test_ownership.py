"""Maintenance in worker mode: due checks at each vehicle's owner, what other nodes change taken at the next check."""

from typing import Any

from kernel import VehicleIds, VehiclePartitions, VehicleSet, partition_of
from maintenance import Interval, MaintenanceService, MemoryMaintenanceStore, MeterDeriver, ScheduleBody
from twin import PATH_SEP, ReportedEntry, TwinFilter, TwinState

NOW = 1_765_000_000.0


class Twins:
    def __init__(self, *vids: str) -> None:
        self.states = [TwinState(vehicle_id=v, created_at=1.0, updated_at=1.0) for v in vids]
        self.lists: list[VehicleSet | None] = []

    def drive(self, vehicle_id: str, odometer_km: float) -> None:
        """The vehicle's owner committed a new odometer reading (on another node)."""
        state = next(s for s in self.states if s.vehicle_id == vehicle_id)
        state.reported[f"meters{PATH_SEP}odometer_km"] = ReportedEntry(odometer_km, NOW)

    async def list_twins(self, query: TwinFilter) -> list[TwinState]:
        self.lists.append(query.vehicles)
        return [
            s
            for s in self.states
            if (query.after is None or s.vehicle_id > query.after)
            and (query.vehicles is None or query.vehicles(s.vehicle_id))
            and (query.fleet is None or s.fleet == query.fleet)
        ][: query.limit]

    async def load_twin(self, vehicle_id: str) -> TwinState | None:
        return next((s for s in self.states if s.vehicle_id == vehicle_id), None)


class Alerts:
    """An alert lifecycle like the rules engine's: one open alert per (rule, vehicle)."""

    def __init__(self) -> None:
        self.open: set[tuple[str, str]] = set()
        self.raised: list[tuple[str, str]] = []
        self.cleared: list[tuple[str, str, str]] = []

    def raise_alert(self, rule: str, vehicle_id: str, fleet: str, severity: str, message: str, values: Any) -> bool:
        if (rule, vehicle_id) in self.open:
            return False
        self.open.add((rule, vehicle_id))
        self.raised.append((rule, vehicle_id))
        return True

    def clear_alert(self, rule: str, vehicle_id: str, by: str, values: Any = None) -> bool:
        if (rule, vehicle_id) not in self.open:
            return False
        self.open.discard((rule, vehicle_id))
        self.cleared.append((rule, vehicle_id, by))
        return True

    async def flush(self) -> None:
        return None

    def open_alert(self, rule: str, vehicle_id: str) -> object:
        return (rule, vehicle_id) if (rule, vehicle_id) in self.open else None


class ReadsLogged(MemoryMaintenanceStore):
    """The memory store, noting the vehicles each intervals read returned."""

    def __init__(self) -> None:
        super().__init__()
        self.read: list[set[str]] = []

    async def intervals(self, vehicles: VehicleSet | None = None) -> list[Interval]:
        found = await super().intervals(vehicles)
        self.read.append({i.vehicle_id for i in found})
        return found


# Of 4 partitions, v1 is in 0, v2 and v3 in 1.
K = 4


def service(store: MemoryMaintenanceStore, owned: set[str], twins: Twins | None = None) -> MaintenanceService:
    """A worker holding the partitions of the vehicles `owned` (none: an API node)."""
    m = MaintenanceService(
        store, twins or Twins("v1", "v2"), deriver=MeterDeriver(), alerts=Alerts(), clock=lambda: NOW
    )
    parts = frozenset(partition_of(v, K) for v in owned)
    m.owns = lambda vid: partition_of(vid, K) in parts
    m.held = lambda: VehiclePartitions(parts, K)
    return m


async def test_each_owner_raises_its_own_due_alerts_and_clears_what_a_service_elsewhere_ends() -> None:
    """Two hubs: each raises due alerts for its own vehicles only; a service recorded on the other hub is
    cleared by the owner at its next check, and the owner's check keeps the interval that service began."""
    store = MemoryMaintenanceStore()
    a, b = service(store, {"v1"}), service(store, {"v2"})
    async with a, b:
        await a.put_schedule("inspect", ScheduleBody(name="Inspection", every_days=1, due_soon_days=1))
        assert await a.check() == 1
        assert await b.check() == 1  # b took the schedule made on a from the store
        rule = "maintenance.inspect.due_soon"
        assert (a.alerts.raised, b.alerts.raised) == ([(rule, "v1")], [(rule, "v2")])  # type: ignore[union-attr]
        record = await a.record_service("v2", "inspect", by="ana")
        assert b.alerts.open == {(rule, "v2")}  # type: ignore[union-attr]
        await b.check()
        assert b.alerts.cleared == [(rule, "v2", "service")]  # type: ignore[union-attr]
        stored = {(i.schedule_id, i.vehicle_id): i for i in await store.intervals()}
        assert stored[("inspect", "v2")].service_id == record.id


async def test_a_meter_correction_made_elsewhere_is_applied_by_the_owner_once() -> None:
    """A correction stored by a hub that does not own the vehicle reaches the owner's deriver at its next check."""
    store = MemoryMaintenanceStore()
    a, b = service(store, {"v1"}), service(store, {"v2"})
    async with a, b:
        await a.correct_meters("v2", by="ana", odometer_km=500.0)
        assert a.deriver.values("v2") == (None, None)  # type: ignore[union-attr]
        await b.check()
        assert b.deriver.values("v2") == (500.0, None)  # type: ignore[union-attr]
        b.deriver.forget("v2")  # type: ignore[union-attr]
        await b.check()
        assert b.deriver.values("v2") == (None, None)  # type: ignore[union-attr]  (not applied twice)


async def test_a_hub_reads_a_vehicle_it_does_not_own_from_the_store() -> None:
    """A vehicle created after this hub started, owned elsewhere, can have a service recorded here."""
    store = MemoryMaintenanceStore()
    a = service(store, {"v1"})
    async with a:
        await a.put_schedule("inspect", ScheduleBody(name="Inspection", every_days=1))
        a.twins.states.append(TwinState(vehicle_id="v3", created_at=2.0, updated_at=2.0, fleet="north"))  # type: ignore[attr-defined]
        record = await a.record_service("v3", "inspect", by="ana")
        assert record.fleet == "north"


async def test_a_due_alert_the_database_fenced_off_is_raised_again() -> None:
    """A check whose alert write was refused (the partition moved meanwhile) does not store the interval as
    alerted, so the vehicle's owner raises the alert at its next check."""
    store = MemoryMaintenanceStore()
    a = service(store, {"v1"})
    alerts: Alerts = a.alerts  # type: ignore[assignment]

    async def fenced() -> None:
        alerts.open.clear()  # what the rules engine's resync leaves: nothing of the batch stored

    async with a:
        await a.put_schedule("inspect", ScheduleBody(name="Inspection", every_days=1, due_soon_days=1))
        alerts.flush = fenced  # type: ignore[method-assign]
        assert await a.check() == 0
        assert [i.stage.value for i in await store.intervals()] == ["ok"]
        del alerts.flush  # the instance attribute: the class's flush again
        assert await a.check() == 1
        assert [i.stage.value for i in await store.intervals()] == ["due_soon"]


async def test_a_check_reads_only_the_intervals_of_the_held_partitions() -> None:
    """Each worker's check reads the intervals of its own partitions from the store, not every vehicle's."""
    store = ReadsLogged()
    a, b = service(store, {"v1"}), service(store, {"v2"})
    async with a, b:
        await a.put_schedule("inspect", ScheduleBody(name="Inspection", every_days=1, due_soon_days=1))
        await a.check()
        await b.check()
        store.read.clear()
        await a.check()
        await b.check()
        assert store.read == [{"v1"}, {"v2"}]


async def test_the_due_list_on_a_node_that_does_not_own_a_vehicle_has_its_current_meters_and_interval() -> None:
    """A worker's due list shows another worker's vehicle with the meters its owner committed since, and the
    interval a service recorded elsewhere began; an API node's shows every vehicle so; both read by page."""
    store = MemoryMaintenanceStore()
    twins = Twins("v1", "v2", "v3")
    for vid in ("v1", "v2", "v3"):
        twins.drive(vid, 100.0)
    a, b, api = service(store, {"v1"}, twins), service(store, {"v2"}, twins), service(store, set(), twins)
    async with a, b, api:
        await a.put_schedule("oil", ScheduleBody(name="Oil", every_km=1000, due_soon_km=100))
        await a.check()
        await b.check()  # the intervals of v2 and v3 begin at 100 km, at their owner
        twins.drive("v2", 1095.0)
        twins.drive("v3", 1099.0)

        def standing(rows: list[Any]) -> dict[str, tuple[float | None, str]]:
            return {d.vehicle_id: (d.odometer_km, d.status.value) for _, _, d in rows}

        assert standing(a.standing())["v2"] == (100.0, "ok")  # what a last read: stale
        twins.lists.clear()
        assert standing(await a.standing_now()) == {
            "v1": (100.0, "ok"),
            "v2": (1095.0, "due_soon"),
            "v3": (1099.0, "due_soon"),
        }
        assert twins.lists == [VehiclePartitions(frozenset({1, 2, 3}), K)]
        assert standing(await api.standing_now())["v1"] == (100.0, "ok")
        assert standing(await api.standing_now(vehicle_id="v2")) == {"v2": (1095.0, "due_soon")}
        assert twins.lists[-1] == VehicleIds(frozenset({"v2"}))
        # A vehicle created since, its interval not begun by its owner yet: listed from its twin's meters.
        twins.states.append(TwinState(vehicle_id="v5", created_at=2.0, updated_at=2.0))
        twins.drive("v5", 500.0)
        [new] = [d for _, _, d in await a.standing_now() if d.vehicle_id == "v5"]
        assert (new.odometer_km, new.next_due_km, new.status.value) == (500.0, 1500.0, "ok")
        await api.check()  # takes the schedule made on a (and evaluates nothing: it owns no vehicle)
        await api.record_service("v2", "oil", by="ana")  # recorded on the API node: v2's next interval
        assert standing(await a.standing_now())["v2"] == (1095.0, "ok")
