"""Remote commands: the shapes a command and a fleet job take in storage, on the wire and in events.

A command is addressed to one vehicle and moves through `CommandState`: `queued` until
the vehicle is online (and its precondition holds), `sent` until the vehicle answers
on `vehicles/{vid}/commands/{id}/result`, then one terminal state. Every change is
appended to `history`, so the command carries its own audit trail.

A job is one command rolled out to many vehicles at a bounded rate; its per-vehicle
outcomes are the commands that name it in `job_id`.
"""

from __future__ import annotations

import enum
import os
import re
import time
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta

from kernel import isoformat
from twin import VehicleSelector


class CommandState(enum.Enum):
    QUEUED = "queued"
    SENT = "sent"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    PRECONDITION_FAILED = "precondition_failed"
    CANCELLED = "cancelled"


OPEN_STATES: Final = frozenset({CommandState.QUEUED, CommandState.SENT})
# What a vehicle may answer; the other terminal states are the hub's own verdicts.
RESULT_STATES: Final = frozenset({CommandState.SUCCEEDED, CommandState.FAILED, CommandState.REJECTED})

NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
IDEMPOTENCY_KEY_PATTERN: Final = re.compile(r"[ -~]{1,128}")


class CommandsSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    default_ttl_s: Annotated[
        float, Meta(gt=0, description="A command without `ttl_s` expires this long after it is created.")
    ] = 3600.0
    max_ttl_s: Annotated[
        float,
        Meta(
            gt=0, description="The longest `ttl_s` a caller may ask for (7 days, as long as an MQTT session is kept)."
        ),
    ] = 604_800.0
    resend_interval_s: Annotated[
        float, Meta(gt=0, description="A sent command without a result is sent again this often until it expires.")
    ] = 30.0
    max_args_bytes: Annotated[int, Meta(ge=1, description="Encoded size of one command's `args` at most.")] = 8192
    max_open_per_vehicle: Annotated[
        int, Meta(ge=1, description="Commands waiting (queued or sent) per vehicle at most; more are refused.")
    ] = 100
    max_wait_s: Annotated[
        float, Meta(gt=0, description="The longest `?wait=` an HTTP caller may hold a request open.")
    ] = 60.0
    wait_poll_s: Annotated[
        float,
        Meta(
            gt=0,
            description=(
                "Hub workers: how often a `?wait=` on a node that does not hold the command reads the owner's "
                "answer from the database."
            ),
        ),
    ] = 0.25
    max_job_rate: Annotated[
        float, Meta(gt=0, description="A fleet job sends to at most this many vehicles per second.")
    ] = 1000.0
    max_job_vehicles: Annotated[int, Meta(ge=1, description="A fleet job targets at most this many vehicles.")] = (
        100_000
    )
    job_check_s: Annotated[
        float,
        Meta(
            gt=0,
            description="Worker mode: how often the worker dispatching fleet jobs asks the database whether a fully "
            "dispatched job's commands have all finished (other workers hold most of them).",
        ),
    ] = 1.0
    queue_max: Annotated[
        int,
        Meta(
            ge=1, description="Results and presence changes waiting for the command service; when full, ingest waits."
        ),
    ] = 10_000


class Transition(msgspec.Struct, frozen=True, omit_defaults=True):
    """One entry of a command's history: the state it entered, when, and why."""

    state: CommandState
    at: float
    detail: str | None = None


class Command(msgspec.Struct, omit_defaults=True):
    id: str
    vehicle_id: str
    name: str
    state: CommandState
    created_at: float
    expires_at: float
    updated_at: float
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    precondition: str | None = None
    idempotency_key: str | None = None
    job_id: str | None = None
    # Who asked and from where (the security layer fills in real users later).
    requested_by: str = "anonymous"
    source: str | None = None
    # How many times the command went out, and when last.
    attempts: int = 0
    sent_at: float | None = None
    # The vehicle's answer, or the hub's reason for a terminal state of its own.
    detail: str | None = None
    result: dict[str, Any] | None = None
    history: list[Transition] = msgspec.field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES

    def move(self, state: CommandState, at: float, detail: str | None = None) -> None:
        self.state = state
        self.updated_at = at
        if detail is not None:
            self.detail = detail
        self.history.append(Transition(state, at, detail))


class JobState(enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


class JobTransition(msgspec.Struct, frozen=True, omit_defaults=True):
    state: JobState
    at: float
    detail: str | None = None


class JobSelector(VehicleSelector, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Which vehicles a job targets: a vehicle selector (each of `vehicle_ids` must have a twin), and
    optionally a condition in the rules language that each twin must meet.
    """

    # e.g. `tags.depot == "north" and soc > 20`
    filter: str | None = None


class Job(msgspec.Struct, omit_defaults=True):
    id: str
    name: str
    selector: JobSelector
    rate: float
    ttl_s: float
    state: JobState
    created_at: float
    updated_at: float
    # Resolved when the job was created, in the order commands go out.
    targets: list[str]
    # How many of `targets` have a command so far: a restarted hub resumes here.
    dispatched: int = 0
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    precondition: str | None = None
    requested_by: str = "anonymous"
    source: str | None = None
    finished_at: float | None = None
    history: list[JobTransition] = msgspec.field(default_factory=list)

    def move(self, state: JobState, at: float, detail: str | None = None) -> None:
        self.state = state
        self.updated_at = at
        if state in (JobState.CANCELLED, JobState.COMPLETED):
            self.finished_at = at
        self.history.append(JobTransition(state, at, detail))


class DeviceCommand(msgspec.Struct, frozen=True):
    """Payload of `vehicles/{vid}/commands/{id}`."""

    id: str
    name: str
    args: dict[str, Any]
    expires_at: str | None
    attempt: int


class CommandResult(msgspec.Struct, frozen=True):
    """Payload of `vehicles/{vid}/commands/{id}/result`; unknown fields are ignored for newer firmware."""

    status: str
    detail: str | None = None
    result: dict[str, Any] | None = None


class TransitionView(msgspec.Struct, frozen=True, omit_defaults=True):
    state: CommandState
    at: str | None
    detail: str | None = None


class CommandView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A command as the API returns it and as events carry it: times in RFC 3339, fields without a value left out."""

    id: str
    vehicle_id: str
    name: str
    args: dict[str, Any]
    state: CommandState
    created_at: str | None = None
    updated_at: str | None = None
    expires_at: str | None = None
    sent_at: str | None = None
    attempts: int
    precondition: str | None = None
    idempotency_key: str | None = None
    job_id: str | None = None
    requested_by: str
    source: str | None = None
    detail: str | None = None
    result: dict[str, Any] | None = None
    history: list[TransitionView]


def command_view(command: Command) -> CommandView:
    return CommandView(
        id=command.id,
        vehicle_id=command.vehicle_id,
        name=command.name,
        args=command.args,
        state=command.state,
        created_at=isoformat(command.created_at),
        updated_at=isoformat(command.updated_at),
        expires_at=isoformat(command.expires_at),
        sent_at=isoformat(command.sent_at),
        attempts=command.attempts,
        precondition=command.precondition,
        idempotency_key=command.idempotency_key,
        job_id=command.job_id,
        requested_by=command.requested_by,
        source=command.source,
        detail=command.detail,
        result=command.result,
        history=[TransitionView(t.state, isoformat(t.at), t.detail) for t in command.history],
    )


def new_id(now: float | None = None) -> str:
    """A time-ordered id (millisecond timestamp, then randomness): sorts by creation, fits one topic level."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"{millis:012x}{os.urandom(8).hex()}"
