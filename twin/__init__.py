"""Vehicle twins: the model, merge and delta, the ingest pipeline and the stores.

`twin` knows nothing of MQTT or HTTP; the broker and the API adapt to it.
"""

from twin.document import DeltaMessage, TwinDocument, to_document
from twin.errors import TwinError, VersionConflict
from twin.inbound import (
    ACCEPTED,
    Channel,
    DisconnectReason,
    Inbound,
    InboundSink,
    MessageKind,
    VehicleChannel,
    Verdict,
)
from twin.limits import Limits
from twin.metrics import IngestMetrics
from twin.model import HistoryRow, TwinState
from twin.observe import TwinObserver, TwinUpdate, UpdateKind
from twin.service import HealthReport, IngestSettings, TwinService, running
from twin.stores.memory import MemoryStore
from twin.stores.protocol import HistoryQuery, Order, Store, StoreInfo, TwinFilter
from twin.stores.sqlite import SqliteStore

__all__ = [
    "ACCEPTED",
    "Channel",
    "DeltaMessage",
    "DisconnectReason",
    "HealthReport",
    "HistoryQuery",
    "HistoryRow",
    "Inbound",
    "InboundSink",
    "IngestMetrics",
    "IngestSettings",
    "Limits",
    "MemoryStore",
    "MessageKind",
    "Order",
    "SqliteStore",
    "Store",
    "StoreInfo",
    "TwinDocument",
    "TwinError",
    "TwinFilter",
    "TwinObserver",
    "TwinService",
    "TwinState",
    "TwinUpdate",
    "UpdateKind",
    "VehicleChannel",
    "Verdict",
    "VersionConflict",
    "running",
    "to_document",
]
