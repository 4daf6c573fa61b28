"""Report schedules: each due period is queued once, and one failing schedule stays alone."""

import datetime as dt

from reports import MemoryReportStore, ReportScheduleBody, ReportService
from twin import MemoryStore


async def test_a_failing_schedule_does_not_stop_the_others():
    """A schedule whose channel is gone fails alone; the next schedule's report is still queued."""

    class Sink:
        def __init__(self):
            self.sent = []

        async def report(self, channel_id, key, payload):
            if channel_id == "gone":
                raise LookupError("notification channel 'gone' not found")
            self.sent.append((channel_id, key))
            return 1

    sink = Sink()
    async with MemoryStore() as twins, MemoryReportStore() as store:
        # Not entered: no background loop runs the schedules behind the test's back.
        service = ReportService(twins, twins, sink=sink, store=store, clock=lambda: 1_765_000_000.0)
        await service.put_schedule("a", ReportScheduleBody(fleet="f", channel="gone", at_hour=0))
        await service.put_schedule("b", ReportScheduleBody(fleet="f", channel="ops", at_hour=0))
        assert await service.run_schedules() == 1
    day = (dt.datetime.fromtimestamp(1_765_000_000.0, dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    assert sink.sent == [("ops", f"b:{day}")]
    assert service.failures == 1
