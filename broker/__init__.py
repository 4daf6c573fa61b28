"""The embedded MQTT broker: listeners, authentication, topic routing and presence.

It turns each accepted PUBLISH and each vehicle's presence change into a
`twin.inbound.Inbound` for the ingest pipeline, and turns `twin.inbound.Channel`
sends back into topics.
"""

from broker.contract import CONTRACT, TopicSpec, refusal_reasons
from broker.errors import PortInUse
from broker.metrics import BrokerMetrics
from broker.server import EmbeddedBroker, TlsListener

__all__ = ["CONTRACT", "BrokerMetrics", "EmbeddedBroker", "PortInUse", "TlsListener", "TopicSpec", "refusal_reasons"]
