"""Prometheus metrics of remote commands, registered on the hub's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class CommandMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.created = Counter("fleethub_commands_created_total", "Commands queued", registry=registry)
        self.finished = Counter(
            "fleethub_commands_finished_total",
            "Commands that reached a final state, by state",
            ["state"],
            registry=registry,
        )
        self.sends = Counter(
            "fleethub_commands_sends_total", "Commands sent to vehicles, resends included", registry=registry
        )
        self.refused = Counter(
            "fleethub_commands_results_refused_total",
            "Command results refused, by reason",
            ["reason"],
            registry=registry,
        )
        self.waiting = Gauge("fleethub_commands_waiting", "Commands queued or sent, not finished", registry=registry)
