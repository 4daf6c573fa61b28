"""The maintenance timer the hub runs over any store."""

import asyncio

import pytest

from twin import HistoryRow, MaintenanceReport, MemoryStore, run_maintenance


class FlakyStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__(retention_days=1)
        self.calls: list[float] = []
        self.fourth = asyncio.Event()

    async def maintain(self, now: float) -> MaintenanceReport:
        self.calls.append(now)
        if len(self.calls) >= 4:
            self.fourth.set()
        if len(self.calls) == 2:
            raise RuntimeError("database restarting")
        return await super().maintain(now)


async def test_timer_keeps_running_through_a_failed_run() -> None:
    """A failing maintenance run is logged and the next one still happens, with the clock's time."""
    store = FlakyStore()
    await store.write_batch([], [HistoryRow("v", 0.0, 0.0, None, {"a": 1})])
    clock = iter(range(1_000_000, 2_000_000, 100_000))
    task = asyncio.create_task(run_maintenance(store, every_s=0.01, clock=lambda: float(next(clock))))
    try:
        await asyncio.wait_for(store.fourth.wait(), timeout=5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert store.calls[:3] == [1_000_000.0, 1_100_000.0, 1_200_000.0]
    assert store.rows == []
