"""A vehicle's interval: begun without meters, it counts from the first reading, and the check stores that."""

from kernel import VehicleIds
from maintenance import MaintenanceService, MemoryMaintenanceStore, MeterDeriver, ScheduleBody
from tests.unit.maintenance.test_ownership import NOW, Alerts, Twins


async def test_a_due_list_read_before_the_check_leaves_the_check_the_first_meter_to_store() -> None:
    """An interval begun before its vehicle had meters starts counting from the first reading; a due list
    read in between does not take that change away from the check, which stores it."""
    store = MemoryMaintenanceStore()
    twins = Twins("v1")
    # One hub (no worker mode): nothing re-reads the stored interval before the check.
    a = MaintenanceService(store, twins, deriver=MeterDeriver(), alerts=Alerts(), clock=lambda: NOW)
    async with a:
        await a.put_schedule("oil", ScheduleBody(name="Oil", every_km=1000, due_soon_km=100))
        await a.check()
        assert [i.start_odometer_km for i in await store.intervals()] == [None]
        twins.drive("v1", 100.0)
        await a.adopt(VehicleIds(frozenset({"v1"})))  # reads the twin again
        assert [d.next_due_km for _, _, d in a.standing()] == [1100.0]
        await a.check()
        assert [i.start_odometer_km for i in await store.intervals()] == [100.0]
