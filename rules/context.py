"""What a compiled rule reads: the vehicle's twin as seen at one update.

The twin side implements `EvalContext`; `rules.memory_context.MemoryContext` is the
in-memory implementation built from plain dicts, for tests and backtests.
"""

from __future__ import annotations

import enum
from typing import Final, Protocol

Path = tuple[str, ...]
"""A field path, one key per element: `("battery", "temp_c")`."""


class Source(enum.Enum):
    """Which part of the twin a field path reads."""

    REPORTED = "reported"
    DESIRED = "desired"
    TAGS = "tags"


class Missing(enum.Enum):
    """The type of `MISSING`: a value that is absent, null or unusable."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"

    def __str__(self) -> str:
        return "MISSING"


MISSING: Final = Missing.MISSING
"""What an absent (or null) field evaluates to; see docs/rules-language.md, "Missing values"."""


class EvalContext(Protocol):
    """One vehicle's twin at the update being evaluated.

    Every method is a cheap in-memory read; none does I/O. Timestamps are epoch
    seconds. "Previous" means the state before the update being evaluated: for a
    key that update did not touch, `previous` equals the current value and
    `previous_reported_at` equals `reported_at`.
    """

    @property
    def now(self) -> float:
        """The evaluation time (the hub's clock), epoch seconds."""
        ...

    # Scratch space the compiled functions share while one context lives, e.g. a zone
    # test several rules make on one update. Entries are keyed by the values they were
    # computed from, so a context whose data changes never serves a stale one.
    memo: dict[object, object]

    def value(self, path: Path, source: Source) -> object:
        """The current value at `path` in `source`, or `MISSING` when absent."""
        ...

    def previous(self, path: Path) -> object:
        """The reported value at `path` before this update, or `MISSING`."""
        ...

    def reported_at(self, path: Path) -> float | None:
        """Device time of the last update of `path`, or of the newest key under it."""
        ...

    def previous_reported_at(self, path: Path) -> float | None:
        """`reported_at(path)` as it was before this update."""
        ...

    def connected(self) -> bool | None:
        """Whether the vehicle is connected now; None when the hub does not know."""
        ...

    def connected_since(self) -> float | None:
        """When the current (or last) connection started; None when never connected."""
        ...
