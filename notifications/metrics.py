"""Prometheus metrics of notifications, registered on the hub's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class NotificationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.queued = Counter(
            "fleethub_notifications_queued_total",
            "Notifications put in the outbox, by kind",
            ["kind"],
            registry=registry,
        )
        self.suppressed = Counter(
            "fleethub_notifications_suppressed_total",
            "Alert events not queued for a channel: the same rule, vehicle and event within its dedup_s",
            registry=registry,
        )
        self.deliveries = Counter(
            "fleethub_notification_deliveries_total",
            "Delivery attempts, by outcome (delivered, failed, dead)",
            ["outcome"],
            registry=registry,
        )
        self.digests = Counter(
            "fleethub_notification_digests_total", "Deliveries formed from several notifications", registry=registry
        )
