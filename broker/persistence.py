"""The broker's state as the broker store keeps it: changes to write, and a snapshot to restore.

The engine decides what changed (a session made, a message queued, sent, acknowledged);
this module turns each into the store's `Change` Structs and hands them to the group-commit
writer, and turns a `Snapshot` back into sessions, subscriptions, queues and retained
messages at start. Ordering (what must commit before which acknowledgement) is the
engine's; see `broker.stores.protocol`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import structlog

from broker import codec, stores
from broker.codec import Properties, RetainHandling, Subscription, Version
from broker.quiet_log import QuietLog
from broker.session import Inflight, InflightState, Message, Outgoing, Session
from broker.stores import StoreWriter
from kernel import FleethubError

log = structlog.get_logger("broker")

_STATE = {
    InflightState.PUBLISH_SENT: stores.InflightState.PUBLISH_SENT,
    InflightState.PUBREL_SENT: stores.InflightState.PUBREL_SENT,
}
_BACK = {v: k for k, v in _STATE.items()}


class Persistence:
    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer
        self._log = QuietLog()

    def put(self, changes: Sequence[stores.Change]) -> asyncio.Future[None] | None:
        """Queue `changes` for the next group commit; the future is done when they are durable.

        None when there is nothing to write, or when the writer cannot take them (a full
        writer, a stopping hub): a future that fails then, so nothing waiting on it is acknowledged.
        """
        if not changes:
            return None
        try:
            return self._writer.put(changes)
        except FleethubError as exc:
            self._log.warning("broker store write refused", type(exc).__name__, error=str(exc))
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            failed.exception()
            return failed


def owner_of(session: Session) -> str | None:
    principal = session.principal
    return f"{principal.kind.value}:{principal.name}" if principal is not None else session.owner


def record(session: Session, *, now: float | None = None) -> stores.PutSession:
    """The session's own fields; `expires_at` is set while its client is away."""
    expires_at = None
    if not session.connected:
        left_at = session.disconnected_at if session.disconnected_at is not None else (now or time.time())
        expires_at = left_at + session.expiry_s
    return stores.PutSession(
        stores.SessionRecord(
            session.client_id,
            int(session.version),
            int(session.expiry_s),
            expires_at,
            owner_of(session),
            session.created_at,
        )
    )


def stored_message(outgoing: Outgoing) -> stores.Message:
    """An outgoing delivery as stored: its QoS and RETAIN as delivered, its subscription ids in the properties."""
    message = outgoing.message
    props = message.properties
    if outgoing.subscription_ids:
        props = Properties(**{f: getattr(props, f) for f in props.__struct_fields__})
        props.subscription_identifiers = list(outgoing.subscription_ids)
    return stores.Message(
        message.topic,
        message.payload,
        outgoing.qos,
        outgoing.retain,
        _props(props),
        message.expires_at,
    )


def retained_message(message: Message) -> stores.Message:
    return stores.Message(
        message.topic, message.payload, message.qos, True, _props(message.properties), message.expires_at
    )


def _props(props: Properties) -> bytes:
    return b"" if props == Properties() else codec.encode_properties(props)


def _message_of(stored: stores.Message) -> tuple[Message, tuple[int, ...]] | None:
    """The message as the broker holds it; None (logged) when its stored properties cannot be read."""
    try:
        props = codec.decode_properties(stored.properties) if stored.properties else Properties()
    except codec.CodecError as exc:
        # A damaged row, or one from another version: set aside, the rest is restored.
        log.warning("broker store message not restored", topic=stored.topic, error=exc.detail)
        return None
    ids = tuple(props.subscription_identifiers)
    props.subscription_identifiers = []
    return Message(stored.topic, stored.payload, stored.qos, stored.retain, props, stored.expires_at), ids


def enqueue(session: Session, outgoing: Outgoing) -> stores.Enqueue:
    return stores.Enqueue(session.client_id, stores.Queued(outgoing.seq, stored_message(outgoing)))


def sent(session: Session, inflight: Inflight) -> list[stores.Change]:
    """A queued message now in flight: off the queue and recorded with its packet id, in one batch."""
    outgoing = inflight.outgoing
    return [
        stores.Dequeue(session.client_id, outgoing.seq),
        stores.PutInflight(
            session.client_id,
            stores.Inflight(outgoing.seq, inflight.packet_id, _STATE[inflight.state], stored_message(outgoing)),
        ),
    ]


def subscription(client_id: str, sub: Subscription, sub_id: int | None) -> stores.Subscribe:
    return stores.Subscribe(
        client_id,
        stores.Subscription(
            sub.topic_filter, sub.qos, sub.no_local, sub.retain_as_published, int(sub.retain_handling), sub_id
        ),
    )


def restore_session(stored: stores.StoredSession, session: Session, now: float) -> None:
    """Fill a fresh `Session` from what the store kept (its subscriptions are routed by the caller)."""
    rec = stored.record
    session.owner = rec.username
    session.created_at = rec.created_at
    session.stored = True
    # A session whose client was connected when the hub stopped counts its expiry from now.
    session.disconnected_at = now if rec.expires_at is None else rec.expires_at - rec.expiry_interval_s
    for queued in stored.queue:
        restored = _message_of(queued.message)
        if restored is None:
            continue
        message, ids = restored
        outgoing = Outgoing(message, queued.message.qos, queued.message.retain, ids, queued.seq)
        session.queue.append(outgoing)
        session.queued_bytes += message.size
    for flight in stored.inflight:
        restored = _message_of(flight.message)
        if restored is None:
            continue
        message, ids = restored
        outgoing = Outgoing(message, flight.message.qos, flight.message.retain, ids, flight.seq)
        session.inflight[flight.packet_id] = Inflight(outgoing, flight.packet_id, _BACK[flight.state], sent=True)
    for packet_id in stored.incoming:
        session.incoming[packet_id] = True


def restored_subscriptions(stored: stores.StoredSession) -> list[tuple[Subscription, int | None]]:
    return [
        (
            Subscription(s.topic_filter, s.qos, s.no_local, s.retain_as_published, RetainHandling(s.retain_handling)),
            s.subscription_id,
        )
        for s in stored.subscriptions
    ]


def restored_retained(stored: stores.Message) -> Message | None:
    restored = _message_of(stored)
    return None if restored is None else restored[0]


def version_of(level: int) -> Version:
    return Version(level)
