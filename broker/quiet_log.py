"""Repeated identical log lines, aggregated: the first of a kind is logged, the rest are counted.

An attacker sending 800 bad logins a second must not become 800 log lines a second:
per key, one line per window, and when the window closes one more line saying how many
were left out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final

import structlog

log = structlog.get_logger("broker")

DEFAULT_WINDOW_S: Final = 10.0
# Keys remembered at most; beyond it the oldest window is closed early.
_MAX_KEYS: Final = 4096


@dataclass(slots=True)
class _Window:
    started: float
    event: str
    fields: dict[str, Any]
    suppressed: int = 0


class QuietLog:
    def __init__(self, window_s: float = DEFAULT_WINDOW_S) -> None:
        self._window_s = window_s
        self._open: dict[tuple[str, str], _Window] = {}

    def warning(self, event: str, key: str, **fields: Any) -> None:
        """Log `event` unless one with the same `key` was logged in this window; then count it."""
        now = time.monotonic()
        window = self._open.get((event, key))
        if window is not None and now - window.started < self._window_s:
            window.suppressed += 1
            return
        if window is not None:
            self._close((event, key), window)
        if len(self._open) >= _MAX_KEYS:
            oldest = next(iter(self._open))
            self._close(oldest, self._open[oldest])
        self._open[(event, key)] = _Window(now, event, fields)
        log.warning(event, **fields)

    def flush(self, now: float | None = None) -> None:
        """Close windows that have run their time, reporting what they left out."""
        moment = time.monotonic() if now is None else now
        for key, window in list(self._open.items()):
            if moment - window.started >= self._window_s:
                self._close(key, window)

    def _close(self, key: tuple[str, str], window: _Window) -> None:
        del self._open[key]
        if window.suppressed:
            log.warning(window.event, **window.fields, repeated=window.suppressed, over_s=round(self._window_s, 1))
