"""Worker mode in /metrics: partitions held, messages taken directly or through the inbox, moves.

Read from the worker at scrape time, so nothing is counted on the message path. The
families exist on every hub (empty unless it runs as a worker), so dashboards and alerting
rules can name them whatever the deployment.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from cluster.worker import ClusterWorker


class WorkerMetrics(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        # Set when the hub joins a cluster (fleethub/hub.py).
        self.worker: ClusterWorker | None = None
        registry.register(self)

    def describe(self) -> Iterator[Metric]:
        return self._families(None)

    def collect(self) -> Iterator[Metric]:
        return self._families(self.worker)

    def _families(self, worker: ClusterWorker | None) -> Iterator[Metric]:
        held = GaugeMetricFamily(
            "fleethub_cluster_partitions_held", "Partitions whose lease this worker holds (worker mode)"
        )
        ready = GaugeMetricFamily(
            "fleethub_cluster_partitions_ready",
            "Partitions held and taken over: their messages go straight into this worker's pipeline",
        )
        messages = CounterMetricFamily(
            "fleethub_cluster_messages",
            "Vehicle message items this worker routed (a birth message is two: connect and subscribe), "
            "by label path: direct (it owns the vehicle) or forwarded (stored in the inbox for the owner)",
            labels=["path"],
        )
        moves = CounterMetricFamily(
            "fleethub_cluster_partition_moves", "Lease changes that gave this worker partitions or took some away"
        )
        connected = GaugeMetricFamily(
            "fleethub_cluster_broker_connected", "1 while this worker's connection to the external broker is up"
        )
        if worker is not None:
            held.add_metric([], len(worker.ownership.tokens))
            ready.add_metric([], len(worker.ready))
            messages.add_metric(["direct"], worker.direct)
            messages.add_metric(["forwarded"], worker.forwarded)
            moves.add_metric([], worker.moves)
            if worker.edge is not None:
                connected.add_metric([], 1.0 if worker.edge.connected else 0.0)
        yield from (held, ready, messages, moves, connected)
