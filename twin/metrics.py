"""Prometheus metrics of the ingest pipeline, registered on the hub's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter(
            "fleethub_ingest_messages_accepted_total",
            "Telemetry messages merged and stored",
            registry=registry,
        )
        self.refused = Counter(
            "fleethub_ingest_messages_refused_total",
            "Messages refused by the twin pipeline, by reason",
            ["reason"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "fleethub_ingest_queue_depth", "Items waiting for the ingest consumer", registry=registry
        )
        self.in_flight = Gauge(
            "fleethub_ingest_in_flight",
            "Items taken by the ingest consumer whose batch is not committed yet",
            registry=registry,
        )
        self.batch_size = Histogram(
            "fleethub_ingest_batch_size",
            "Items per group commit",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "fleethub_ingest_commit_seconds",
            "Time to commit one batch",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.commit_failures = Counter(
            "fleethub_ingest_commit_failures_total",
            "Batch commits that failed and were retried",
            registry=registry,
        )
        self.dead_letters = Counter(
            "fleethub_ingest_dead_letters_total",
            "Messages the database refused, kept in the dead-letter table, by message kind",
            ["kind"],
            registry=registry,
        )
        self.connected_vehicles = Gauge(
            "fleethub_connected_vehicles", "Vehicles with an open MQTT session", registry=registry
        )
        self.presence_flaps = Counter(
            "fleethub_presence_flaps_total",
            "Reconnects within the presence debounce window, reported as no change",
            registry=registry,
        )
