"""Vehicle twins: the model, merge and delta, the ingest pipeline, history and the twin store.

`twin` knows nothing of MQTT or HTTP; the broker and the API adapt to it. Other
packages import what is named here, never twin's modules.
"""

from twin.document import ConnectionView, DeltaMessage, TwinAsOf, TwinDocument, to_document
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
from twin.limits import Limits, check_patch
from twin.merge import apply_reported, merge_patch
from twin.metrics import IngestMetrics
from twin.model import PATH_SEP, HistoryRow, Json, PresenceEvent, ReportedEntry, TwinState
from twin.observe import TelemetryEnricher, TwinObserver, TwinUpdate, UpdateKind
from twin.paths import flatten, prune_empty
from twin.selector import VehicleSelector
from twin.service import ErrorMessage, HealthReport, IngestSettings, TwinService, running
from twin.stores import (
    Agg,
    AggregatePage,
    AggregateQuery,
    AggregateRow,
    Bucket,
    FieldAgg,
    HistoryOptions,
    HistoryPage,
    HistoryQuery,
    HistoryReader,
    MaintenanceReport,
    MemoryStore,
    Order,
    PointQuery,
    PostgresStore,
    PresenceQuery,
    SqliteStore,
    Store,
    TwinFilter,
    parse_aggs,
    run_maintenance,
    time_zone,
    twin_store,
)
from twin.trips import TRIP_FIELDS, Position, Stop, Trip, TripDetector, TripSettings

__all__ = [
    "ACCEPTED",
    "PATH_SEP",
    "TRIP_FIELDS",
    "Agg",
    "AggregatePage",
    "AggregateQuery",
    "AggregateRow",
    "Bucket",
    "Channel",
    "ConnectionView",
    "DeltaMessage",
    "DisconnectReason",
    "ErrorMessage",
    "FieldAgg",
    "HealthReport",
    "HistoryOptions",
    "HistoryPage",
    "HistoryQuery",
    "HistoryReader",
    "HistoryRow",
    "Inbound",
    "InboundSink",
    "IngestMetrics",
    "IngestSettings",
    "Json",
    "Limits",
    "MaintenanceReport",
    "MemoryStore",
    "MessageKind",
    "Order",
    "PointQuery",
    "Position",
    "PostgresStore",
    "PresenceEvent",
    "PresenceQuery",
    "ReportedEntry",
    "SqliteStore",
    "Stop",
    "Store",
    "TelemetryEnricher",
    "Trip",
    "TripDetector",
    "TripSettings",
    "TwinAsOf",
    "TwinDocument",
    "TwinError",
    "TwinFilter",
    "TwinObserver",
    "TwinService",
    "TwinState",
    "TwinUpdate",
    "UpdateKind",
    "VehicleChannel",
    "VehicleSelector",
    "Verdict",
    "VersionConflict",
    "apply_reported",
    "check_patch",
    "flatten",
    "merge_patch",
    "parse_aggs",
    "prune_empty",
    "run_maintenance",
    "running",
    "time_zone",
    "to_document",
    "twin_store",
]
