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
        self.security = SecurityMetrics(registry)


class SecurityMetrics:
    """Refused logins, ACL denials and abuse-limit violations, by reason."""

    def __init__(self, registry: CollectorRegistry) -> None:
        refused = Counter(
            "fleethub_mqtt_logins_refused",
            "MQTT connections refused at login, by reason.",
            ["reason"],
            registry=registry,
        )
        self.logins_refused = {r: refused.labels(reason=r) for r in LOGIN_REFUSALS}
        denied = Counter(
            "fleethub_mqtt_acl_denied",
            "PUBLISHes and SUBSCRIBE filters refused by the topic ACL, by action.",
            ["action"],
            registry=registry,
        )
        self.acl_denied = {a: denied.labels(action=a) for a in ("publish", "subscribe")}
        violations = Counter(
            "fleethub_mqtt_limit_violations",
            "Abuse limits hit (message rate, connection rate, subscriptions), by limit.",
            ["limit"],
            registry=registry,
        )
        self.limit_violations = {k: violations.labels(limit=k) for k in LIMITS}
        self.disconnected = Counter(
            "fleethub_mqtt_revoked_disconnects",
            "Connections closed because their vehicle credentials or user token were revoked.",
            registry=registry,
        )


LOGIN_REFUSALS = ("anonymous", "bad_credentials", "backoff", "revoked", "certificate", "client_id")
LIMITS = ("message_rate", "connect_rate_ip", "connect_rate_client", "subscriptions")
