"""The keep-alive watch of one connection (MQTT-3.1.2-24: silent for 1.5 keep-alives is gone)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class IdleWatch:
    """Calls `expired` once waiting for a packet's first bytes has lasted `limit` seconds.

    One timer per connection rather than one per packet. Only that wait counts: a reader
    paused inside a packet, or held by a full ingest pipeline, is not a silent client.
    """

    __slots__ = ("_expired", "_limit", "_loop", "_since", "_timer")

    def __init__(self, limit: float, expired: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._limit = limit
        self._expired = expired
        self._since: float | None = None
        self._timer = self._loop.call_later(limit, self._check)

    def waiting(self) -> None:
        self._since = self._loop.time()

    def busy(self) -> None:
        self._since = None

    def cancel(self) -> None:
        self._timer.cancel()

    def _check(self) -> None:
        due = self._limit
        if self._since is not None:
            idle = self._loop.time() - self._since
            if idle >= self._limit:
                self._expired()
                return
            due = self._limit - idle
        self._timer = self._loop.call_later(due, self._check)
