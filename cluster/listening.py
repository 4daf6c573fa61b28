"""The state of a node's PostgreSQL LISTEN connections, for `/healthz` and `/metrics`.

A node in worker mode holds up to two: the console's live relay (`fleethub_live`) and the
forwarded-writes listener (`fleethub_requests`). Each reconnects on its own with backoff;
while one is down the node still works (forwarded writes are polled, the live relay
re-reads everything once it is back), so a down listener is reported, not fatal.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from kernel import isoformat

# Reconnect backoff of both listeners: from the first delay, doubling, up to the last.
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0


class ListenMetrics:
    """One gauge and one counter per listener (label `listener`: `live` or `requests`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.listening = Gauge(
            "fleethub_cluster_listening",
            "1 while this node's LISTEN connection is open (worker mode), 0 while it reconnects",
            ["listener"],
            registry=registry,
        )
        self.reconnects = Counter(
            "fleethub_cluster_listen_reconnects",
            "LISTEN connections of this node lost and reopened (worker mode)",
            ["listener"],
            registry=registry,
        )


class ListenState:
    """Whether one LISTEN connection is open, since when, how often it was lost, and why last."""

    def __init__(self, name: str, metrics: ListenMetrics | None = None) -> None:
        self.name = name
        self.metrics = metrics
        self.listening = False
        # Wall-clock time of the last change (opened or lost); None until the first attempt ends.
        self.since: float | None = None
        self.reconnects = 0
        self.last_error: str | None = None
        if metrics is not None:
            metrics.listening.labels(name).set(0)

    def opened(self) -> None:
        self.listening = True
        self.since = time.time()
        if self.metrics is not None:
            self.metrics.listening.labels(self.name).set(1)

    def lost(self, error: BaseException) -> None:
        if self.listening:
            self.reconnects += 1
            if self.metrics is not None:
                self.metrics.reconnects.labels(self.name).inc()
        self.listening = False
        self.since = time.time()
        self.last_error = f"{type(error).__name__}: {error}"[:300]
        if self.metrics is not None:
            self.metrics.listening.labels(self.name).set(0)

    def status(self) -> dict[str, Any]:
        return {
            "listening": self.listening,
            "since": isoformat(self.since),
            "reconnects": self.reconnects,
            "last_error": self.last_error,
        }


def next_delay(delay: float) -> float:
    return min(delay * 2, BACKOFF_MAX_S)
