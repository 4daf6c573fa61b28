"""The `$SYS/broker/...` statistics monitoring tools expect (the names Mosquitto uses)."""

from __future__ import annotations

from typing import Any

from broker.metrics import BrokerMetrics


def statistics(
    metrics: BrokerMetrics, *, connected: int, sessions: int, retained: int, uptime_s: float
) -> dict[str, str]:
    """Topic suffix under `$SYS/broker/` -> payload."""
    values: dict[str, object] = {
        "clients/connected": connected,
        "clients/total": sessions,
        "messages/received": _total(metrics.messages_received),
        "messages/sent": _total(metrics.messages_sent),
        "bytes/received": _total(metrics.bytes_received),
        "bytes/sent": _total(metrics.bytes_sent),
        "retained messages/count": retained,
        "uptime": f"{int(uptime_s)} seconds",
        "version": "fleethub",
    }
    return {name: str(value) for name, value in values.items()}


def _total(counter: Any) -> int:
    """A counter's value through the public collector interface."""
    return int(sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total")))
