"""The embedded MQTT broker: listeners, authentication, topic routing and presence.

It turns each accepted PUBLISH and each vehicle's presence change into a
`twin.inbound.Inbound` for the ingest pipeline, and turns `twin.inbound.Channel`
sends back into topics.
"""

from broker.contract import CONTRACT, TopicSpec, refusal_reasons
from broker.errors import PortInUse
from broker.external_auth import ExternalAuth
from broker.grants import Grant, Grants, grants_of
from broker.metrics import BrokerMetrics
from broker.server import EmbeddedBroker, TlsListener

__all__ = [
    "CONTRACT",
    "BrokerMetrics",
    "EmbeddedBroker",
    "ExternalAuth",
    "Grant",
    "Grants",
    "PortInUse",
    "TlsListener",
    "TopicSpec",
    "grants_of",
    "refusal_reasons",
]
