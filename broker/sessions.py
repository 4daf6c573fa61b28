"""What a persistent session (clean session = false) keeps between connections.

amqtt keeps a disconnected session's subscriptions and queues QoS 1 and 2 messages for
it, but on reconnect it sent the queued ones with RETAIN set and waited for every
acknowledgement before serving the connection, it never resent messages that were in
flight when the link dropped, and it only expired sessions when told an integer
interval. Here a session resumes with, in order, the unacknowledged messages again
(same packet ids, DUP set) and then what queued while it was away; a session left
alone for `session_expiry_s` is dropped with its subscriptions and queue.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

from amqtt.session import Session

from broker.auth import BrokerAuth
from broker.handler import HubProtocolHandler
from broker.metrics import BrokerMetrics
from broker.routing import RoutingBroker
from security import AbuseLimits
from twin import InboundSink

# Seconds between sweeps for expired sessions.
SWEEP_INTERVAL: Final = 1.0


class SessionBroker(RoutingBroker):
    def __init__(
        self,
        config: dict[str, Any],
        *,
        sink: InboundSink,
        metrics: BrokerMetrics,
        max_payload_bytes: int,
        max_queued_messages: int,
        session_expiry_s: float,
        auth: BrokerAuth | None = None,
        abuse: AbuseLimits | None = None,
    ) -> None:
        super().__init__(
            config,
            sink=sink,
            metrics=metrics,
            max_payload_bytes=max_payload_bytes,
            max_queued_messages=max_queued_messages,
            auth=auth,
            abuse=abuse,
        )
        self._session_expiry_s = session_expiry_s

    @property
    def stored_sessions(self) -> int:
        return len(self._sessions)

    async def _publish_session_retained_messages(self, session: Session) -> None:
        """Resume a session: resend what was unacknowledged, then send what queued while away.

        Nothing here awaits, so no live message can slip in between; the sends run as
        tasks in order (the connection's write lock is first come, first served) and a
        client slow to acknowledge them does not hold up its connection.
        """
        handler = self._get_handler(session)
        if not isinstance(handler, HubProtocolHandler):
            return
        for message in list(session.inflight_out.values()):
            self._tasks_queue.append(asyncio.ensure_future(handler.resend(message)))
        queue = session.retained_messages
        while not queue.empty():
            queued = queue.get_nowait()
            # Delivered because of a subscription, not a new one: RETAIN is 0 (MQTT-3.3.1-9).
            self._tasks_queue.append(
                asyncio.ensure_future(handler.mqtt_publish(queued.topic, queued.data, queued.qos, retain=False))
            )

    async def end_clean_session(self, session: Session) -> None:
        """Forget a clean session as its connection ends (MQTT 3.1.2.4); amqtt kept it up to a second."""
        stored = self._sessions.get(session.client_id)
        if session.clean_session and stored is not None and stored[0] is session:
            del self._sessions[session.client_id]
            await self._del_all_subscriptions(session)
            session.clear_queues()

    async def _session_monitor(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            await self.expire_sessions(time.time())
            self._metrics.stored_sessions.set(len(self._sessions))

    async def expire_sessions(self, now: float) -> None:
        """Drop disconnected clean sessions, and persistent ones left alone for the expiry time."""
        for client_id, (session, _) in list(self._sessions.items()):
            if self._expired(session, now):
                # Looked up again: an earlier clean-up awaited, and the client may be back.
                current = self._sessions.get(client_id)
                if current is not None and current[0] is session and self._expired(session, now):
                    await self._cleanup_session(client_id)

    def _expired(self, session: Session, now: float) -> bool:
        if session.transitions.state != "disconnected":
            return False
        if session.clean_session:
            return True
        left = session.last_disconnect_time
        return left is not None and now - left >= self._session_expiry_s
