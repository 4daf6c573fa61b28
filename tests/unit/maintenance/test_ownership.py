"""Maintenance in worker mode: due checks at each vehicle's owner, what other nodes change taken at the next check."""

from typing import Any

from maintenance import MaintenanceService, MemoryMaintenanceStore, MeterDeriver, ScheduleBody
from twin import TwinFilter, TwinState

NOW = 1_765_000_000.0


class Twins:
    def __init__(self, *vids: str) -> None:
        self.states = [TwinState(vehicle_id=v, created_at=1.0, updated_at=1.0) for v in vids]

    async def list_twins(self, query: TwinFilter) -> list[TwinState]:
        return [s for s in self.states if query.after is None or s.vehicle_id > query.after][: query.limit]

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


def service(store: MemoryMaintenanceStore, owned: set[str]) -> MaintenanceService:
    m = MaintenanceService(store, Twins("v1", "v2"), deriver=MeterDeriver(), alerts=Alerts(), clock=lambda: NOW)
    m.owns = owned.__contains__
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
