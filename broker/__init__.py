"""fleethub's own MQTT server: listeners, authentication, topic routing, sessions and presence.

It speaks MQTT 3.1, 3.1.1 and 5 (`broker.codec`), turns each accepted PUBLISH and each
vehicle's presence change into a `twin.inbound.Inbound` for the ingest pipeline, and
turns `twin.inbound.Channel` sends back into topics.
"""

from broker.contract import CONTRACT, TopicSpec, refusal_reasons
from broker.errors import PortInUse
from broker.external_auth import ExternalAuth
from broker.grants import Grant, Grants, grants_of
from broker.metrics import BrokerMetrics
from broker.server import EmbeddedBroker, TlsListener
from broker.stores import BrokerStoreMetrics, QueueLimits, WriterSettings, broker_store

# Connection-level PUBLISHes read but not yet handed to ingest: the reader handles one
# packet at a time, so one message per connection waits at most.
BACKLOG_LIMIT = 1

__all__ = [
    "BACKLOG_LIMIT",
    "CONTRACT",
    "BrokerMetrics",
    "BrokerStoreMetrics",
    "EmbeddedBroker",
    "ExternalAuth",
    "Grant",
    "Grants",
    "PortInUse",
    "QueueLimits",
    "TlsListener",
    "TopicSpec",
    "WriterSettings",
    "broker_store",
    "grants_of",
    "refusal_reasons",
]
