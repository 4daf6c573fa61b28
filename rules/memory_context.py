"""An `EvalContext` over plain dicts, for tests, examples and backtests.

    ctx = MemoryContext(
        reported={"soc": 12, "gps": {"lat": 19.43, "lon": -99.13}},
        before={"soc": 14},
        reported_ts={"soc": 1000.0},
        before_ts={"soc": 940.0},
        now=1010.0,
    )

`before` (the reported document before this update) and `before_ts` default to
`reported` and `reported_ts`, as for an update that changed nothing. Timestamps
are keyed by dotted path; `reported_at` of a path is its own timestamp or, failing
that, the newest timestamp of a key under it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rules.context import MISSING, Path, Source


def lookup(document: Mapping[str, object] | None, path: Path) -> object:
    """The value at `path` in a nested dict, or MISSING when absent or null."""
    current: object = document
    for key in path:
        if not isinstance(current, Mapping):
            return MISSING
        current = current.get(key, MISSING)
    return MISSING if current is None else current


def newest(timestamps: Mapping[str, float], path: Path) -> float | None:
    """The timestamp of `path`, else the newest one under it, else None."""
    dotted = ".".join(path)
    exact = timestamps.get(dotted)
    if exact is not None:
        return exact
    prefix = dotted + "."
    under = [ts for key, ts in timestamps.items() if key.startswith(prefix)]
    return max(under) if under else None


@dataclass(slots=True)
class MemoryContext:
    """A twin at one update, from dicts. Satisfies `rules.EvalContext`."""

    reported: Mapping[str, object] = field(default_factory=dict)
    desired: Mapping[str, object] = field(default_factory=dict)
    tags: Mapping[str, object] = field(default_factory=dict)
    before: Mapping[str, object] | None = None
    reported_ts: Mapping[str, float] = field(default_factory=dict)
    before_ts: Mapping[str, float] | None = None
    now: float = 0.0
    is_connected: bool | None = None
    since: float | None = None
    memo: dict[object, object] = field(default_factory=dict, repr=False, compare=False)

    def value(self, path: Path, source: Source) -> object:
        if source is Source.REPORTED:
            return lookup(self.reported, path)
        return lookup(self.desired if source is Source.DESIRED else self.tags, path)

    def previous(self, path: Path) -> object:
        return lookup(self.reported if self.before is None else self.before, path)

    def reported_at(self, path: Path) -> float | None:
        return newest(self.reported_ts, path)

    def previous_reported_at(self, path: Path) -> float | None:
        return newest(self.reported_ts if self.before_ts is None else self.before_ts, path)

    def connected(self) -> bool | None:
        return self.is_connected

    def connected_since(self) -> float | None:
        return self.since
