"""Due evaluation: the first of several measures decides the stage."""

import msgspec
import pytest

from maintenance import Interval, Schedule, ScheduleBody, Stage, evaluate
from twin import VehicleSelector

DAY = 86_400.0


def schedule(**body) -> Schedule:
    return Schedule("oil", ScheduleBody(name="Oil", **body), 0.0, 0.0)


def test_km_hours_and_days_each_give_a_due_point():
    """Each measure the schedule uses has its next due point and what is left."""
    s = schedule(every_km=15_000, every_engine_hours=500, every_days=180)
    due = evaluate(s, Interval("oil", "v1", "f", 0.0, 10_000.0, 100.0), 12_000.0, 150.0, 10 * DAY)
    assert (due.next_due_km, due.next_due_engine_hours, due.next_due_at) == (25_000.0, 600.0, 180 * DAY)
    assert (due.remaining_km, due.remaining_engine_hours, due.remaining_days) == (13_000.0, 450.0, 170.0)
    assert due.status is Stage.OK


@pytest.mark.parametrize(
    ("odo", "hours", "days", "stage"),
    [
        (23_600.0, 100.0, 1, Stage.DUE_SOON),  # within a tenth of 15,000 km
        (25_000.0, 100.0, 1, Stage.OVERDUE),
        (10_000.0, 560.0, 1, Stage.DUE_SOON),
        (10_000.0, 100.0, 181, Stage.OVERDUE),
        (25_000.0, 560.0, 1, Stage.OVERDUE),  # the worst measure wins
    ],
)
def test_the_worst_measure_decides(odo, hours, days, stage):
    """Due soon within the margin (a tenth of the interval by default), overdue at or past the due point."""
    s = schedule(every_km=15_000, every_engine_hours=500, every_days=180)
    assert evaluate(s, Interval("oil", "v1", "f", 0.0, 10_000.0, 100.0), odo, hours, days * DAY).status is stage


def test_explicit_margin():
    """due_soon_km replaces the default margin."""
    s = schedule(every_km=1000, due_soon_km=50)
    interval = Interval("oil", "v1", "f", 0.0, 0.0)
    assert evaluate(s, interval, 940.0, None, 0).status is Stage.OK
    assert evaluate(s, interval, 951.0, None, 0).status is Stage.DUE_SOON


def test_a_schedule_needs_a_measure_and_a_known_severity():
    """A body without any interval, or with an unknown severity, is refused when decoded."""
    with pytest.raises(msgspec.ValidationError, match="at least one"):
        msgspec.json.decode(b'{"name": "x"}', type=ScheduleBody)
    with pytest.raises(msgspec.ValidationError, match="severity"):
        msgspec.json.decode(b'{"name": "x", "every_days": 1, "severity_overdue": "huge"}', type=ScheduleBody)


def test_selector():
    """A schedule selects by fleet, tags and vehicle list together."""
    selector = VehicleSelector(fleet="f1", tags={"model": "A"})
    s = Schedule("s", ScheduleBody(name="x", every_days=1, selector=selector), 0, 0)
    assert s.selects("v1", "f1", {"model": "A", "depot": "n"})
    assert not s.selects("v1", "f2", {"model": "A"})
    assert not s.selects("v1", "f1", {"model": "B"})
    only = Schedule("s", ScheduleBody(name="x", every_days=1, selector=VehicleSelector(vehicle_ids=("v2",))), 0, 0)
    assert only.selects("v2", "any", {})
    assert not only.selects("v1", "any", {})
