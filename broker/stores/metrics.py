"""Prometheus metrics of the broker store: what it holds, and how its commits go."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from broker.stores.protocol import Expired, StoreStats


class BrokerStoreMetrics:
    """Sizes are refreshed at each expiry sweep; counters move with every commit."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(f"fleethub_mqtt_store_{name}", doc, registry=registry)

        def counter(name: str, doc: str) -> Counter:
            return Counter(f"fleethub_mqtt_store_{name}", doc, registry=registry)

        self.sessions = gauge("sessions", "Persistent MQTT sessions in the broker store.")
        self.queued_messages = gauge("queued_messages", "QoS 1/2 messages stored for absent or slow clients.")
        self.queued_bytes = gauge("queued_bytes", "Bytes (topic, payload, properties) of the stored queued messages.")
        self.inflight = gauge("inflight_messages", "Stored outgoing messages sent and not yet acknowledged.")
        self.retained = gauge("retained_messages", "Retained messages in the broker store.")
        self.pending = gauge("pending_changes", "Broker state changes waiting for a commit.")
        self.commits = counter("commits", "Broker store transactions committed (each a group of packets' changes).")
        self.changes = counter("changes", "Broker state changes committed.")
        self.commit_failures = counter("commit_failures", "Broker store commits that failed (retried or refused).")
        self.queued_dropped = counter(
            "queued_dropped", "Queued messages dropped, oldest first, to keep a session within its limits."
        )
        self.expired_sessions = counter("expired_sessions", "Persistent sessions removed by the expiry sweep.")
        self.expired_messages = counter(
            "expired_messages", "Queued and retained messages removed by the sweep after their message expiry."
        )

    def observe(self, stats: StoreStats, expired: Expired) -> None:
        self.sessions.set(stats.sessions)
        self.queued_messages.set(stats.queued_messages)
        self.queued_bytes.set(stats.queued_bytes)
        self.inflight.set(stats.inflight)
        self.retained.set(stats.retained)
        self.expired_sessions.inc(len(expired.sessions))
        self.expired_messages.inc(expired.queued + expired.retained)
