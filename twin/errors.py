"""Errors of twin operations (the tree's root and the errors every part shares are in `kernel`)."""

from __future__ import annotations

from kernel import FleethubError, StoreUnavailable


class TwinError(FleethubError):
    """A twin operation was refused."""


class VersionConflict(TwinError):
    """The writer's `If-Match` version is not the current one."""

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(f"version conflict: expected {expected}, current is {current}")
        self.expected = expected
        self.current = current


class OwnerUnavailable(StoreUnavailable):
    """No node that may write the vehicle's twin applied the write in time; nothing was written.

    Hub workers (cluster/): the vehicle's partition has no live owner, or the owner did not
    answer. Partitions move within a lease, so trying again after `retry_after_s` may succeed.
    """

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
