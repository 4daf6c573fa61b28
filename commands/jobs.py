"""Fleet jobs: which vehicles a selector names, how fast commands go out, and the report."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Protocol

import msgspec

from commands.model import OPEN_STATES, Command, CommandState, Job, JobSelector, JobState
from kernel import InvalidPayload, LimitExceeded, NotFound, isoformat
from twin import TwinFilter, TwinState

# Twins read per page while resolving a selector.
_PAGE = 1000


class TwinReader(Protocol):
    """The live twins, as the twin service holds them."""

    async def state(self, vehicle_id: str) -> TwinState | None: ...

    async def states(self, query: TwinFilter) -> list[TwinState]: ...


class Preconditions(Protocol):
    """Conditions of the rules language over one twin (see `rules.preconditions`)."""

    def check(self, source: str) -> None:
        """Raise a `FleethubError` naming line and column unless `source` is a valid condition."""
        ...

    def holds(self, source: str, state: TwinState, now: float) -> bool: ...


def _admits(selector: JobSelector, twin: TwinState, preconditions: Preconditions | None, now: float) -> bool:
    if not selector.admits(twin):
        return False
    if selector.filter is not None and preconditions is not None:
        return preconditions.holds(selector.filter, twin, now)
    return True


async def resolve_targets(
    selector: JobSelector, twins: TwinReader, preconditions: Preconditions | None, now: float, max_vehicles: int
) -> list[str]:
    """The vehicle ids a selector names now, sorted; refuses an empty or oversized set."""
    if selector.filter is not None:
        if preconditions is None:
            raise InvalidPayload("filter_unavailable", "selector filters need the rules language, which is off")
        preconditions.check(selector.filter)
    found: list[str] = []
    if selector.vehicle_ids is not None:
        missing = []
        for vid in sorted(set(selector.vehicle_ids)):
            twin = await twins.state(vid)
            if twin is None:
                missing.append(vid)
            elif _admits(selector, twin, preconditions, now):
                found.append(vid)
        if missing:
            raise NotFound(f"no twin for vehicle(s) {', '.join(missing[:10])}")
    else:
        after: str | None = None
        while True:
            page = await twins.states(TwinFilter(fleet=selector.fleet, after=after, limit=_PAGE))
            found.extend(t.vehicle_id for t in page if _admits(selector, t, preconditions, now))
            if len(found) > max_vehicles:
                break
            if len(page) < _PAGE:
                break
            after = page[-1].vehicle_id
    if len(found) > max_vehicles:
        raise LimitExceeded(
            "too_many_vehicles", f"the selector matches more than {max_vehicles} vehicles (commands.max_job_vehicles)"
        )
    if not found:
        raise InvalidPayload("no_vehicles", "the selector matches no vehicle")
    return found


class RateLimit:
    """At most `rate` sends per second over any window: `ceil(rate)` per `ceil(rate) / rate` seconds.

    A sliding window rather than a token bucket, so a pass of the service that runs
    late cannot send a second's worth saved up on top of the current second's.
    """

    def __init__(self, rate: float) -> None:
        self.per_window = math.ceil(rate)
        self.window_s = self.per_window / rate
        self._sent: deque[float] = deque()

    def take(self, now: float) -> int:
        """How many may be sent now; they count as sent at `now`."""
        while self._sent and self._sent[0] <= now - self.window_s:
            self._sent.popleft()
        return max(0, self.per_window - len(self._sent))

    def sent(self, now: float, count: int) -> None:
        self._sent.extend([now] * count)


class Progress(msgspec.Struct):
    total: int
    dispatched: int
    # Vehicles the job has not sent to yet (or never will, once cancelled).
    not_dispatched: int
    # Dispatched commands by state.
    states: dict[str, int]
    finished: int


class Outcome(msgspec.Struct, omit_defaults=True):
    vehicle_id: str
    state: str
    command_id: str | None = None
    detail: str | None = None


class JobTransitionView(msgspec.Struct, omit_defaults=True):
    state: JobState
    at: str | None
    detail: str | None = None


class JobReport(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A job as the API returns it: settings, progress counts and, when asked, per-vehicle outcomes."""

    id: str
    name: str
    args: dict[str, object]
    selector: JobSelector
    rate: float
    ttl_s: float
    precondition: str | None = None
    state: JobState
    requested_by: str
    source: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    progress: Progress
    history: list[JobTransitionView]
    outcomes: list[Outcome] | None = None


def report(job: Job, counts: Mapping[CommandState, int], commands: Sequence[Command] | None = None) -> JobReport:
    """`counts` are the job's commands by state; with `commands` (all of them), each target's outcome is listed."""
    dispatched = sum(counts.values())
    listed: list[Outcome] | None = None
    if commands is not None:
        by_vehicle = {c.vehicle_id: c for c in commands}
        undispatched = "skipped" if job.state is JobState.CANCELLED else "pending"
        listed = []
        for vid in job.targets:
            c = by_vehicle.get(vid)
            listed.append(Outcome(vid, undispatched) if c is None else Outcome(vid, c.state.value, c.id, c.detail))
    return JobReport(
        id=job.id,
        name=job.name,
        args=dict(job.args),
        selector=job.selector,
        rate=job.rate,
        ttl_s=job.ttl_s,
        precondition=job.precondition,
        state=job.state,
        requested_by=job.requested_by,
        source=job.source,
        created_at=isoformat(job.created_at),
        updated_at=isoformat(job.updated_at),
        finished_at=isoformat(job.finished_at),
        progress=Progress(
            total=len(job.targets),
            dispatched=dispatched,
            not_dispatched=len(job.targets) - dispatched,
            states={s.value: counts.get(s, 0) for s in CommandState},
            finished=dispatched - sum(counts.get(s, 0) for s in OPEN_STATES),
        ),
        history=[JobTransitionView(t.state, isoformat(t.at), t.detail) for t in job.history],
        outcomes=listed,
    )
