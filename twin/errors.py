"""Errors of twin operations (the tree's root and the errors every part shares are in `kernel`)."""

from __future__ import annotations

from kernel import FleethubError


class TwinError(FleethubError):
    """A twin operation was refused."""


class VersionConflict(TwinError):
    """The writer's `If-Match` version is not the current one."""

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(f"version conflict: expected {expected}, current is {current}")
        self.expected = expected
        self.current = current
