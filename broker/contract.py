"""The device-facing topic contract (v1) as data: what the manual's MQTT reference page renders.

`broker.topics` decides; this table describes. A test holds the two together: every uplink row
parses to the kind it names, and a client publishing on a downlink row is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from broker.topics import Refusal

Direction = Literal["vehicle → hub", "hub → vehicle", "hub → subscribers"]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    pattern: str
    direction: Direction
    qos: str
    payload: str


CONTRACT: tuple[TopicSpec, ...] = (
    TopicSpec(
        "vehicles/{vid}/telemetry",
        "vehicle → hub",
        "0, 1 (recommended) or 2",
        "JSON object of reported values, nested objects allowed; optional `ts` (device time: epoch seconds, "
        "epoch milliseconds or RFC 3339) and `seq` (non-negative integer). Merged into `reported`; each message "
        "is one history row. Acknowledged only once committed.",
    ),
    TopicSpec(
        "vehicles/{vid}/twin/get",
        "vehicle → hub",
        "0, 1 or 2",
        '`{"request_id": "..."}` (optional); answered on `twin/doc`',
    ),
    TopicSpec(
        "vehicles/{vid}/twin/rejected",
        "vehicle → hub",
        "0, 1 or 2",
        '`{"path.to.key": "reason", ...}`: desired values the vehicle cannot apply',
    ),
    TopicSpec(
        "vehicles/{vid}/commands/{command_id}/result",
        "vehicle → hub",
        "1",
        '`{"status": "succeeded" | "failed" | "rejected", "detail": "...", "result": {...}}` '
        "(`detail` and `result` optional)",
    ),
    TopicSpec(
        "vehicles/{vid}/twin/doc",
        "hub → vehicle",
        "1",
        "the full twin document (plus `request_id` when asked with one)",
    ),
    TopicSpec(
        "vehicles/{vid}/twin/delta",
        "hub → vehicle",
        "1",
        '`{"version": n, "delta": {...}}`: desired values not yet applied; sent on every desired change, when '
        "the vehicle connects and when it subscribes to this topic",
    ),
    TopicSpec(
        "vehicles/{vid}/commands/{command_id}",
        "hub → vehicle",
        "1",
        '`{"id": ..., "name": "unlock", "args": {...}, "expires_at": "<RFC 3339>", "attempt": n}`; subscribe '
        "with `vehicles/{vid}/commands/+`",
    ),
    TopicSpec(
        "vehicles/{vid}/errors",
        "hub → vehicle",
        "1",
        '`{"error": "<reason>", "detail": "...", "topic": "...", "ts": "<RFC 3339>"}`: why the hub refused '
        "something the vehicle sent",
    ),
    TopicSpec(
        "events/commands/{vid}/{command_id}",
        "hub → subscribers",
        "1",
        "every state change of a command",
    ),
)


def refusal_reasons() -> list[str]:
    """The reasons the broker itself refuses a PUBLISH with (the twin pipeline adds its own)."""
    return [reason.value for reason in Refusal]
