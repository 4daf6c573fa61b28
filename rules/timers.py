"""Deadlines for many keys in one heap: schedule, replace, cancel, pop what is due.

One entry per key; scheduling a key again replaces its deadline. Replaced and
cancelled entries stay in the heap until they surface and are skipped, so every
operation is O(log n) and nothing scans all keys.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class TimerHeap(Generic[K]):
    """Deadlines (epoch seconds) by key."""

    __slots__ = ("_counter", "_deadlines", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._deadlines: dict[K, tuple[float, int]] = {}
        self._counter = itertools.count()

    def schedule(self, key: K, at: float) -> None:
        """Set `key` to fire at `at`, replacing any earlier schedule of it."""
        entry = (at, next(self._counter))
        self._deadlines[key] = entry
        heapq.heappush(self._heap, (*entry, key))
        # Replaced entries are skipped lazily; compact when they dominate the heap.
        if len(self._heap) > 64 and len(self._heap) > 4 * len(self._deadlines):
            self._heap = [(at, n, k) for k, (at, n) in self._deadlines.items()]
            heapq.heapify(self._heap)

    def cancel(self, key: K) -> None:
        self._deadlines.pop(key, None)

    def deadline(self, key: K) -> float | None:
        entry = self._deadlines.get(key)
        return entry[0] if entry else None

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when nothing is scheduled."""
        self._skip_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[tuple[float, K]]:
        """Remove and return (deadline, key) of every key due at `now`, earliest first."""
        due: list[tuple[float, K]] = []
        while True:
            self._skip_stale()
            if not self._heap or self._heap[0][0] > now:
                return due
            at, _, key = heapq.heappop(self._heap)
            del self._deadlines[key]
            due.append((at, key))

    def _skip_stale(self) -> None:
        heap = self._heap
        while heap:
            at, n, key = heap[0]
            if self._deadlines.get(key) == (at, n):
                return
            heapq.heappop(heap)

    def scheduled(self) -> list[K]:
        """Every key with a live deadline."""
        return list(self._deadlines)

    def __len__(self) -> int:
        return len(self._deadlines)

    def __contains__(self, key: object) -> bool:
        return key in self._deadlines
