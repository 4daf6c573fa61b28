"""Settings of worker mode: the external broker, the partitions and their leases."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta


class ClusterSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    broker: Annotated[
        str,
        Meta(
            description=(
                "External MQTT broker (mqtt://host:port or mqtts://host:port): the hub runs as a worker behind it. "
                "Empty: the embedded broker (one process)."
            )
        ),
    ] = ""
    role: Annotated[
        Literal["worker", "api"],
        Meta(
            description="With a store shared by several hubs: 'worker' ingests and serves the API; 'api' serves only."
        ),
    ] = "worker"
    worker_id: Annotated[
        str, Meta(max_length=64, description="This worker's name in leases and its MQTT client id. Empty: host-pid.")
    ] = ""
    partitions: Annotated[
        int,
        Meta(
            ge=1,
            le=4096,
            description="Vehicles are split into this many partitions by a hash of their id; every worker must agree.",
        ),
    ] = 64
    lease_s: Annotated[
        float, Meta(gt=0, description="A partition's lease lasts this long unless renewed; a dead worker's moves then.")
    ] = 6.0
    heartbeat_s: Annotated[
        float, Meta(gt=0, description="How often a worker renews its leases and rebalances; under lease_s / 2.")
    ] = 1.5
    presence: Annotated[
        Literal["birth-will", "emqx"],
        Meta(
            description=(
                "Where connects and drops come from: 'birth-will', the vehicles' own status messages "
                "(vehicles/{vid}/status, any broker); 'emqx', also EMQX's $SYS client events."
            )
        ),
    ] = "birth-will"
    share_group: Annotated[
        str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Shared-subscription group ($share/{group}/...).")
    ] = "fleethub"
    receive_maximum: Annotated[
        int,
        Meta(
            ge=1,
            le=65535,
            description="Unacknowledged QoS 1 messages the broker may hand a worker at once (MQTT 5 Receive Maximum).",
        ),
    ] = 1000
    session_expiry_s: Annotated[
        int,
        Meta(
            ge=60,
            description="The broker keeps a worker's session (and queues its messages) this long while it is away.",
        ),
    ] = 3600
    keepalive_s: Annotated[int, Meta(ge=2, le=3600, description="MQTT keep-alive of the worker's connection.")] = 10
    broker_username: Annotated[str, Meta(description="User the worker logs in to the broker as (empty: none).")] = ""
    broker_password: Annotated[str, Meta(description="Password of broker_username.")] = ""
    broker_cafile: Annotated[
        str, Meta(description="CA bundle that verifies an mqtts:// broker (empty: system CAs).")
    ] = ""
    leave_timeout_s: Annotated[
        float,
        Meta(gt=0, description="On SIGTERM, how long a worker waits for what it received to commit before it leaves."),
    ] = 10.0
    inbox_batch: Annotated[
        int, Meta(ge=1, description="Forwarded messages an owner takes from the inbox table per pass at most.")
    ] = 500
    inbox_in_flight: Annotated[
        int,
        Meta(
            ge=1,
            le=64,
            description="Batches taken from the inbox an owner has in its pipeline at once: it takes the next "
            "while the last commits.",
        ),
    ] = 4
    inbox_write_batch: Annotated[
        int,
        Meta(
            ge=1,
            description="Messages for other workers' partitions a worker writes to the inbox table per transaction "
            "at most (one COPY).",
        ),
    ] = 1000
    inbox_linger_s: Annotated[
        float,
        Meta(
            ge=0,
            le=1,
            description="How long a worker gathers messages for other workers' partitions before it writes them "
            "to the inbox table (fewer, larger transactions for a little latency).",
        ),
    ] = 0.005
    inbox_settle_s: Annotated[
        float,
        Meta(
            gt=0,
            description=(
                "How long an owner waits for a batch taken from the inbox to commit; rows not committed "
                "by then stay in the inbox for a later pass."
            ),
        ),
    ] = 30.0
    inbox_poll_s: Annotated[
        float,
        Meta(
            gt=0,
            description="How often an owner looks for messages other workers forwarded to it when no NOTIFY "
            "woke it (a lost LISTEN connection, a missed notice).",
        ),
    ] = 0.5
    forward_timeout_s: Annotated[
        float,
        Meta(
            gt=0,
            description="A twin write asked for on a node that does not own the vehicle waits this long for the owner "
            "to take it; then it is withdrawn and answered 503 with Retry-After.",
        ),
    ] = 10.0
    forward_outcome_timeout_s: Annotated[
        float,
        Meta(
            gt=0,
            description="A forwarded twin write the owner took but has not answered is withdrawn after this long "
            "(its commit then fails) and answered 503.",
        ),
    ] = 30.0
    forward_poll_s: Annotated[
        float,
        Meta(
            gt=0,
            description="How often forwarded twin writes are looked for and their answers read when no NOTIFY came.",
        ),
    ] = 0.5
    forward_batch: Annotated[int, Meta(ge=1, description="Forwarded twin writes an owner takes per pass at most.")] = (
        100
    )
    forward_keep_s: Annotated[
        float,
        Meta(
            gt=0,
            description="Forwarded twin writes left behind by a node that went away are deleted after this long.",
        ),
    ] = 600.0

    live_max_pending: Annotated[
        int,
        Meta(
            ge=1,
            description="Vehicles other nodes announced as changed and not yet read into this node's console; beyond "
            "it the node drops the list and re-reads every twin once instead of holding more.",
        ),
    ] = 50_000
    live_read_batch: Annotated[
        int, Meta(ge=1, description="Twins read per query when a node reads what other nodes changed for its console.")
    ] = 1000
    live_events_max: Annotated[
        int,
        Meta(
            ge=1,
            description="Alert and command events waiting to be announced to other nodes' consoles; beyond it they "
            "are dropped and those consoles are told to reload alerts and commands.",
        ),
    ] = 10_000

    @property
    def enabled(self) -> bool:
        """True when this hub runs beside others on one database (a broker URL or the api role)."""
        return bool(self.broker) or self.role == "api"
