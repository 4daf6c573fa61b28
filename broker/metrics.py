"""Prometheus metrics of the embedded broker."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from broker.topics import Refusal


class BrokerMetrics:
    """Connected clients, stored sessions, received and refused PUBLISHes, dropped queued messages.

    The labelled children are resolved once here so that the hot path only increments.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.connected_clients = Gauge(
            "fleethub_mqtt_connected_clients",
            "MQTT clients currently connected to the embedded broker.",
            registry=registry,
        )
        self.messages_received = Counter(
            "fleethub_mqtt_messages_received",
            "PUBLISH packets received from clients, refused ones included.",
            registry=registry,
        )
        self.queued_dropped = Counter(
            "fleethub_mqtt_queued_messages_dropped",
            "QoS 1/2 messages dropped, oldest first, from offline sessions whose queue was full.",
            registry=registry,
        )
        self.stored_sessions = Gauge(
            "fleethub_mqtt_sessions",
            "MQTT sessions the broker holds, connected or kept for a client that is away.",
            registry=registry,
        )
        refused = Counter(
            "fleethub_mqtt_messages_refused",
            "PUBLISH packets dropped by the broker, by reason.",
            ["reason"],
            registry=registry,
        )
        self.messages_refused: dict[Refusal, Counter] = {
            reason: refused.labels(reason=reason.value) for reason in Refusal
        }
