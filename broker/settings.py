"""The broker's settings: every limit in one frozen dataclass, and the TLS listener."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Final

from broker.session import SlowPolicy

# The longest string MQTT carries, with its length prefix, and room for a packet id and
# properties: the read bound never cuts the head of a PUBLISH that is legal but for its size.
_HEAD_ROOM: Final = 65_537 + 2 + 4096


@dataclass(frozen=True, slots=True)
class TlsListener:
    """MQTT over TLS. With `client_cert_auth`, a client certificate signed by `cafile` whose
    subject CN is a provisioned vehicle id logs that vehicle in without a password."""

    port: int
    certfile: str
    keyfile: str
    cafile: str = ""
    client_cert_auth: bool = False


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """Every limit of the broker (the `[mqtt]` settings; defaults in README "Limits")."""

    host: str = "0.0.0.0"
    port: int = 1883
    ws_port: int | None = None
    tls: TlsListener | None = None
    allow_anonymous: bool = True
    listen_backlog: int = 4096
    max_payload_bytes: int = 65_536
    max_packet_bytes: int = 1_048_576
    connect_timeout_s: float = 10.0
    max_connections_per_address: int = 1000
    fd_headroom: int = 64
    session_expiry_s: float = 7 * 24 * 3600
    max_queued_messages: int = 1000
    max_queued_bytes: int = 1_048_576
    slow_subscriber: SlowPolicy = SlowPolicy.DROP_OLDEST
    max_inflight_messages: int = 100
    receive_maximum: int = 100
    topic_alias_maximum: int = 64
    write_buffer_bytes: int = 65_536
    sys_interval_s: float = 10.0
    # Sessions held at most (connected clients' and absent persistent ones): a new client id beyond it is refused.
    max_sessions: int = 200_000
    # Retained messages kept at most, and their bytes (topic and payload); a new topic beyond either is not kept.
    max_retained_messages: int = 100_000
    max_retained_bytes: int = 256 * 1024 * 1024
    # MQTT 5 only: the longest keep-alive a client may use (0: its own); a longer or zero one is replaced.
    max_keep_alive_s: int = 0
    # MQTT 5 only: the server named in the DISCONNECT sent at shutdown ("" for none).
    server_reference: str = ""

    @property
    def read_bound(self) -> int:
        """PUBLISH bodies up to this size are read whole; beyond it the payload is thrown away as it arrives."""
        return min(self.max_packet_bytes, self.max_payload_bytes + _HEAD_ROOM)


def tls_context(tls: TlsListener) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tls.cafile or None)
    context.load_cert_chain(tls.certfile, tls.keyfile)
    # A certificate is asked for but not required: vehicles may log in with a password instead.
    context.verify_mode = ssl.CERT_OPTIONAL if tls.cafile else ssl.CERT_NONE
    return context
