"""The twin document as vehicles and operators see it (DESIGN.md, "The twin document")."""

from __future__ import annotations

import msgspec

from kernel import isoformat
from twin.merge import compute_delta, effective_status
from twin.model import Json, TwinState
from twin.paths import materialise, set_path, split


class ConnectionView(msgspec.Struct):
    connected: bool = False
    since: str | None = None
    last_seen: str | None = None
    disconnect_reason: str | None = None
    # Connected but silent for longer than the reporting window is not reporting.
    reporting: bool = False


class Metadata(msgspec.Struct):
    desired: dict[str, Json]
    reported: dict[str, Json]


class TwinDocument(msgspec.Struct):
    vehicle_id: str
    fleet: str
    version: int
    tags: dict[str, Json]
    desired: dict[str, Json]
    reported: dict[str, Json]
    delta: dict[str, Json]
    metadata: Metadata
    connection: ConnectionView
    created_at: str | None
    updated_at: str | None


class DeltaMessage(msgspec.Struct):
    """Payload of `vehicles/{vid}/twin/delta`."""

    version: int
    delta: dict[str, Json]


def to_document(state: TwinState, *, now: float = 0.0, reporting_window_s: float = 0.0) -> TwinDocument:
    """The wire document; `now` and the window decide `connection.reporting`."""
    reported, stamps = materialise(state.reported)
    desired_meta: dict[str, Json] = {}
    for key, meta in state.desired_meta.items():
        leaf: dict[str, Json] = {"ts": isoformat(meta.ts), "status": effective_status(meta, now).value}
        if meta.reason is not None:
            leaf["reason"] = meta.reason
        if meta.expires_at is not None:
            leaf["expires_at"] = isoformat(meta.expires_at)
        set_path(desired_meta, split(key), leaf)
    conn = state.connection
    return TwinDocument(
        vehicle_id=state.vehicle_id,
        fleet=state.fleet,
        version=state.version,
        tags=state.tags,
        desired=state.desired,
        reported=reported,
        delta=compute_delta(state, now),
        metadata=Metadata(desired=desired_meta, reported=_iso_stamps(stamps)),
        connection=ConnectionView(
            connected=conn.connected,
            since=isoformat(conn.since),
            last_seen=isoformat(conn.last_seen),
            disconnect_reason=conn.disconnect_reason,
            reporting=conn.connected and conn.last_seen is not None and now - conn.last_seen <= reporting_window_s,
        ),
        created_at=isoformat(state.created_at),
        updated_at=isoformat(state.updated_at),
    )


def _iso_stamps(stamps: dict[str, Json]) -> dict[str, Json]:
    out: dict[str, Json] = {}
    for key, value in stamps.items():
        if isinstance(value, dict) and set(value) == {"ts"} and isinstance(value["ts"], float):
            out[key] = {"ts": isoformat(value["ts"])}
        elif isinstance(value, dict):
            out[key] = _iso_stamps(value)
    return out


class ReportedMetadata(msgspec.Struct):
    reported: dict[str, Json]


class TwinAsOf(msgspec.Struct):
    """The reported state of a twin as it was at `as_of`, rebuilt from history.

    Only reported values are kept in history, so desired state and tags are not part of
    it; rows older than the history retention are gone and cannot contribute.
    """

    vehicle_id: str
    fleet: str
    as_of: str
    reported: dict[str, Json]
    metadata: ReportedMetadata
    # History rows replayed to rebuild it.
    rows: int


def to_as_of(vehicle_id: str, fleet: str, at: float, reported: TwinState, rows: int) -> TwinAsOf:
    doc, stamps = materialise(reported.reported)
    return TwinAsOf(
        vehicle_id=vehicle_id,
        fleet=fleet,
        as_of=isoformat(at) or "",
        reported=doc,
        metadata=ReportedMetadata(reported=_iso_stamps(stamps)),
        rows=rows,
    )
