"""The one exception tree of fleethub.

Every error a caller may act on derives from `FleethubError`; the API maps the tree
to problem documents in one place and the broker maps it to `vehicles/{vid}/errors`.
Errors that belong to one part live there (`twin.VersionConflict`, `rules.RuleError`,
`security.AlreadyExists`) and derive from these.
"""

from __future__ import annotations


class FleethubError(Exception):
    """Base of every error fleethub raises on purpose."""


class ConfigError(FleethubError):
    """A setting is invalid; the message names the setting and how to fix it."""


class NotFound(FleethubError):
    """The vehicle (or another addressed thing) does not exist."""


class InvalidPayload(FleethubError):
    """A payload is not what the contract allows (not JSON, not an object, bad field)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class LimitExceeded(InvalidPayload):
    """A payload breaks a configured limit (size, depth, keys, string length)."""


class StoreError(FleethubError):
    """The store failed. Each backend maps its own errors to one of the causes below, in one place."""


class TransientStoreError(StoreError):
    """The store cannot take the work now but may soon: the same work is retried unchanged."""


class StoreUnavailable(TransientStoreError):
    """The database cannot be reached or used: server down, connection lost, pool exhausted, I/O error."""


class StoreLocked(TransientStoreError):
    """Another transaction holds a lock the work needs (SQLite busy, a deadlock, a lock timeout)."""


class StoreFull(TransientStoreError):
    """The disk (or a quota) is full."""


class StoreRejected(StoreError):
    """The database refuses a value (out of range, violates a constraint): retrying cannot help.

    Deterministic: the same input fails the same way, so the offending item is found
    and set aside instead of retried.
    """


class PreconditionFailed(FleethubError):
    """A guarded statement changed another number of rows than it required; its transaction rolled back.

    How a node that does not hold a row in memory changes it safely: its UPDATE names the
    state it expects, and an answer of "0 rows" means someone else changed it first.
    """


class Fenced(StoreError):
    """A hub worker wrote for a partition whose lease it no longer holds; nothing was written.

    Raised by the store edges for the database's fence error (SQLSTATE `FENCED_SQLSTATE`).
    """


# The SQLSTATE the fence triggers raise (see cluster/): a class of our own, never PostgreSQL's.
FENCED_SQLSTATE = "FH001"


def is_fenced(exc: BaseException) -> bool:
    """True when `exc` (or what it was raised from) is the database refusing a fenced write."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, Fenced) or getattr(seen, "sqlstate", None) == FENCED_SQLSTATE:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
