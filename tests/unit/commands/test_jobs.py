"""The job rate limit and the job report, without a hub."""

from commands import Command, CommandState, Job, JobSelector, JobState
from commands.jobs import RateLimit, report


def test_rate_limit_never_exceeds_the_rate_in_any_window():
    """However late the passes run, no window of `ceil(rate)/rate` seconds gets more than `ceil(rate)`."""
    limit = RateLimit(5.0)
    sent: list[float] = []
    for now in [0.0, 0.1, 0.35, 1.0, 1.05, 2.9, 3.0, 3.01, 6.0]:
        count = limit.take(now)
        limit.sent(now, count)
        sent.extend([now] * count)
    for start in sent:
        assert sum(1 for t in sent if start <= t < start + 1.0) <= 5
    assert len(sent) == 20


def test_fractional_rates_spread_sends():
    """Half a vehicle per second is one send every two seconds."""
    limit = RateLimit(0.5)
    takes = []
    for now in [0.0, 1.0, 1.9, 2.0, 3.5, 4.0]:
        count = limit.take(now)
        limit.sent(now, count)
        takes.append(count)
    assert takes == [1, 0, 0, 1, 0, 1]


def test_report_counts_states_and_lists_outcomes():
    """Dispatched commands count by state; targets without one are pending, or skipped once cancelled."""
    job = Job(
        id="j1",
        name="lock",
        selector=JobSelector(fleet="default"),
        rate=1.0,
        ttl_s=60.0,
        state=JobState.RUNNING,
        created_at=1.0,
        updated_at=1.0,
        targets=["a", "b", "c"],
        dispatched=2,
    )
    commands = [
        Command("c1", "a", "lock", CommandState.SUCCEEDED, 1.0, 61.0, 2.0, job_id="j1"),
        Command("c2", "b", "lock", CommandState.SENT, 1.0, 61.0, 2.0, job_id="j1"),
    ]
    counts = {CommandState.SUCCEEDED: 1, CommandState.SENT: 1}
    running = report(job, counts, commands)
    assert (running.progress.total, running.progress.dispatched, running.progress.finished) == (3, 2, 1)
    assert running.progress.states["succeeded"] == 1
    assert running.progress.states["sent"] == 1
    assert [(o.vehicle_id, o.state) for o in running.outcomes or []] == [
        ("a", "succeeded"),
        ("b", "sent"),
        ("c", "pending"),
    ]
    job.move(JobState.CANCELLED, 5.0)
    assert (report(job, counts, commands).outcomes or [])[2].state == "skipped"
    assert report(job, counts).outcomes is None
