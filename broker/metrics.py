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
        self.messages_sent = Counter(
            "fleethub_mqtt_messages_sent",
            "PUBLISH packets sent to clients (resends included).",
            registry=registry,
        )
        self.bytes_received = Counter(
            "fleethub_mqtt_bytes_received", "Bytes of MQTT packets read from clients.", registry=registry
        )
        self.bytes_sent = Counter(
            "fleethub_mqtt_bytes_sent", "Bytes of MQTT packets sent to clients.", registry=registry
        )
        refused_connections = Counter(
            "fleethub_mqtt_connections_refused",
            "Connections closed before or at CONNECT by a broker limit, by reason.",
            ["reason"],
            registry=registry,
        )
        self.connections_refused = {r: refused_connections.labels(reason=r) for r in CONNECTION_REFUSALS}
        slow = Counter(
            "fleethub_mqtt_slow_subscriber",
            "Connected subscribers whose queue was full: messages dropped (oldest first), clients disconnected.",
            ["action"],
            registry=registry,
        )
        self.slow_dropped = slow.labels(action="dropped")
        self.slow_disconnected = slow.labels(action="disconnected")
        self.too_large_for_client = Counter(
            "fleethub_mqtt_messages_over_client_maximum",
            "Messages not sent because they were over the maximum packet size the client announced (MQTT 5).",
            registry=registry,
        )
        self.queued_messages = Gauge(
            "fleethub_mqtt_queued_messages",
            "Messages waiting in sessions' outgoing queues, connected and absent clients together.",
            registry=registry,
        )
        self.retained_refused = Counter(
            "fleethub_mqtt_retained_refused",
            "Retained PUBLISHes delivered but not kept: over mqtt.max_retained_messages or max_retained_bytes.",
            registry=registry,
        )
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


# Why a connection was closed before it could log in.
CONNECTION_REFUSALS = ("per_address", "fd_headroom", "connect_timeout", "protocol", "unsupported_version", "sessions")
LOGIN_REFUSALS = ("anonymous", "bad_credentials", "backoff", "revoked", "certificate", "client_id")
LIMITS = ("message_rate", "connect_rate_ip", "connect_rate_client", "subscriptions")
