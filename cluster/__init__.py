"""Worker mode: several hubs behind an external MQTT broker on one PostgreSQL database.

Vehicles are split into partitions by a hash of their id; each partition is leased by
one worker at a time, with a fencing token the database checks on every owner-only
write. See docs/scale.md.
"""

from cluster.announce import EventAnnouncer
from cluster.duties import Duties
from cluster.edge import ExternalBroker, Received, parse_broker_url
from cluster.inbox import Inbox
from cluster.leases import LeaseChange, Leases, fence_of
from cluster.listening import ListenMetrics, ListenState
from cluster.live import LiveRelay
from cluster.metrics import WorkerMetrics
from cluster.partitions import PARTITION_SQL, Ownership, PartitionListener, partition_of
from cluster.requests import ForwardedWrites
from cluster.schema import install
from cluster.settings import ClusterSettings
from cluster.worker import ClusterWorker, default_worker_id, inbound_of

__all__ = [
    "PARTITION_SQL",
    "ClusterSettings",
    "ClusterWorker",
    "Duties",
    "EventAnnouncer",
    "ExternalBroker",
    "ForwardedWrites",
    "Inbox",
    "LeaseChange",
    "Leases",
    "ListenMetrics",
    "ListenState",
    "LiveRelay",
    "Ownership",
    "PartitionListener",
    "Received",
    "WorkerMetrics",
    "default_worker_id",
    "fence_of",
    "inbound_of",
    "install",
    "parse_broker_url",
    "partition_of",
]
