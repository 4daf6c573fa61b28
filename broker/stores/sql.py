"""What the SQLite and PostgreSQL broker stores share: the tables of migration 0040, rows, restore.

Queries are written with `?` placeholders; the PostgreSQL store swaps them for `%s`.

Unlike the stores that run one statement list on either backend (`kernel.Sql`), the broker
store has a module per backend: its cost is in how a batch of thousands of small changes
reaches the database, and that differs. On SQLite each change is one statement run on
the writer's thread, in order, with no round trip; on PostgreSQL the changes are
regrouped by kind into a few statements over arrays, since each statement is a round trip.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from broker.stores.protocol import (
    Inflight,
    InflightState,
    Message,
    Queued,
    SessionRecord,
    Snapshot,
    StoredSession,
    Subscription,
)

UPSERT_SESSION = """
INSERT INTO broker_sessions (client_id, protocol_version, expiry_interval_s, expires_at, username, created_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (client_id) DO UPDATE SET protocol_version = excluded.protocol_version,
    expiry_interval_s = excluded.expiry_interval_s, expires_at = excluded.expires_at,
    username = excluded.username, created_at = excluded.created_at
"""
DROP_SESSION = "DELETE FROM broker_sessions WHERE client_id = ?"
# Changes to a session the store does not hold are ignored: the row is inserted only when it exists.
SUBSCRIBE = """
INSERT INTO broker_subscriptions
    (client_id, topic_filter, qos, no_local, retain_as_published, retain_handling, subscription_id)
SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM broker_sessions WHERE client_id = ?)
ON CONFLICT (client_id, topic_filter) DO UPDATE SET qos = excluded.qos, no_local = excluded.no_local,
    retain_as_published = excluded.retain_as_published, retain_handling = excluded.retain_handling,
    subscription_id = excluded.subscription_id
"""
UNSUBSCRIBE = "DELETE FROM broker_subscriptions WHERE client_id = ? AND topic_filter = ?"
PUT_INFLIGHT = """
INSERT INTO broker_inflight
    (client_id, packet_id, seq, state, topic, payload, qos, retain, properties, expires_at)
SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM broker_sessions WHERE client_id = ?)
ON CONFLICT (client_id, packet_id) DO UPDATE SET seq = excluded.seq, state = excluded.state,
    topic = excluded.topic, payload = excluded.payload, qos = excluded.qos, retain = excluded.retain,
    properties = excluded.properties, expires_at = excluded.expires_at
"""
ACK_INFLIGHT = "DELETE FROM broker_inflight WHERE client_id = ? AND packet_id = ?"
PUT_INCOMING = """
INSERT INTO broker_incoming (client_id, packet_id)
SELECT ?, ? WHERE EXISTS (SELECT 1 FROM broker_sessions WHERE client_id = ?)
ON CONFLICT (client_id, packet_id) DO NOTHING
"""
RELEASE_INCOMING = "DELETE FROM broker_incoming WHERE client_id = ? AND packet_id = ?"
RETAIN = """
INSERT INTO broker_retained (topic, payload, qos, retain, properties, expires_at) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (topic) DO UPDATE SET payload = excluded.payload, qos = excluded.qos, retain = excluded.retain,
    properties = excluded.properties, expires_at = excluded.expires_at
"""
CLEAR_RETAINED = "DELETE FROM broker_retained WHERE topic = ?"
ADD_QUEUED = (
    "UPDATE broker_sessions SET queued_count = queued_count + ?, queued_bytes = queued_bytes + ? WHERE client_id = ?"
)
# Sessions of `?` (a list) over either limit.
OVER_LIMITS = (
    "SELECT client_id FROM broker_sessions WHERE client_id IN ({ids}) AND (queued_count > ? OR queued_bytes > ?)"
)
# The oldest messages of the sessions in `{ids}` beyond either limit, counting from the
# newest; the newest is always kept. Running sums from the newest only grow, so what is
# kept is the newest messages, as many as fit both limits.
TRIM = """
DELETE FROM broker_queue WHERE (client_id, seq) IN (
    SELECT client_id, seq FROM (
        SELECT client_id, seq,
            row_number() OVER newest_first AS n,
            sum(size) OVER newest_first AS total
        FROM broker_queue WHERE client_id IN ({ids})
        WINDOW newest_first AS (PARTITION BY client_id ORDER BY seq DESC)
    ) AS ranked
    WHERE n > 1 AND (n > ? OR total > ?)
)
RETURNING client_id, seq, size
"""
EXPIRE_SESSIONS = "DELETE FROM broker_sessions WHERE expires_at <= ? RETURNING client_id"
EXPIRE_RETAINED = "DELETE FROM broker_retained WHERE expires_at <= ?"
EXPIRE_QUEUED = "DELETE FROM broker_queue WHERE expires_at <= ? RETURNING client_id, size"
STATS_SESSIONS = "SELECT count(*), coalesce(sum(queued_count), 0), coalesce(sum(queued_bytes), 0) FROM broker_sessions"
COUNT_INFLIGHT = "SELECT count(*) FROM broker_inflight"
COUNT_RETAINED = "SELECT count(*) FROM broker_retained"

LOAD_SESSIONS = """
SELECT client_id, protocol_version, expiry_interval_s, expires_at, username, created_at FROM broker_sessions
WHERE expires_at IS NULL OR expires_at > ? ORDER BY client_id
"""
LOAD_SUBSCRIPTIONS = """
SELECT client_id, topic_filter, qos, no_local, retain_as_published, retain_handling, subscription_id
FROM broker_subscriptions ORDER BY client_id, topic_filter
"""
LOAD_QUEUE = """
SELECT client_id, seq, topic, payload, qos, retain, properties, expires_at FROM broker_queue
WHERE expires_at IS NULL OR expires_at > ? ORDER BY client_id, seq
"""
LOAD_INFLIGHT = """
SELECT client_id, packet_id, seq, state, topic, payload, qos, retain, properties, expires_at FROM broker_inflight
ORDER BY client_id, seq, packet_id
"""
LOAD_INCOMING = "SELECT client_id, packet_id FROM broker_incoming ORDER BY client_id, packet_id"
LOAD_RETAINED = """
SELECT topic, payload, qos, retain, properties, expires_at FROM broker_retained
WHERE expires_at IS NULL OR expires_at > ? ORDER BY topic
"""
LAST_SEQ = """
SELECT coalesce(max(seq), 0) FROM
    (SELECT max(seq) AS seq FROM broker_queue UNION ALL SELECT max(seq) FROM broker_inflight) AS seqs
"""


def ids_in(sql: str, count: int, placeholder: str = "?") -> str:
    return sql.replace("{ids}", ", ".join(placeholder for _ in range(count)))


def session_row(r: SessionRecord) -> tuple[Any, ...]:
    return (r.client_id, r.protocol_version, r.expiry_interval_s, r.expires_at, r.username, r.created_at)


def subscription_row(client_id: str, s: Subscription) -> tuple[Any, ...]:
    row = (s.topic_filter, s.qos, s.no_local, s.retain_as_published, s.retain_handling, s.subscription_id)
    return (client_id, *row, client_id)


def message_row(m: Message) -> tuple[Any, ...]:
    return (m.topic, m.payload, m.qos, m.retain, m.properties, m.expires_at)


def queued_row(client_id: str, q: Queued) -> tuple[Any, ...]:
    return (client_id, q.seq, *message_row(q.message), q.message.size)


def inflight_row(client_id: str, i: Inflight) -> tuple[Any, ...]:
    return (client_id, i.packet_id, i.seq, i.state.value, *message_row(i.message), client_id)


def snapshot(
    sessions: Iterable[Any],
    subscriptions: Iterable[Any],
    queue: Iterable[Any],
    inflight: Iterable[Any],
    incoming: Iterable[Any],
    retained: Iterable[Any],
    last_seq: int,
) -> Snapshot:
    """Assemble the rows of the LOAD_* queries (each grouped by client id) into a `Snapshot`.

    The hot loops are written out: a restore builds a Struct or two per queued message.
    """
    parts: dict[str, tuple[SessionRecord, list[Subscription], list[Queued], list[Inflight], list[int]]] = {}
    for client_id, version, interval, expires_at, username, created_at in sessions:
        record = SessionRecord(client_id, version, interval, expires_at, username, created_at)
        parts[client_id] = (record, [], [], [], [])
    for client_id, topic_filter, qos, no_local, rap, rh, sub_id in subscriptions:
        if (held := parts.get(client_id)) is not None:
            held[1].append(Subscription(topic_filter, qos, bool(no_local), bool(rap), rh, sub_id))
    current: str | None = None
    queued: list[Queued] | None = None
    for client_id, seq, topic, payload, qos, retain, properties, expires_at in queue:
        if client_id != current:
            current = client_id
            held = parts.get(client_id)
            queued = held[2] if held is not None else None
        if queued is not None:
            queued.append(Queued(seq, Message(topic, payload, qos, bool(retain), properties, expires_at)))
    for client_id, packet_id, seq, state, topic, payload, qos, retain, properties, expires_at in inflight:
        if (held := parts.get(client_id)) is not None:
            message = Message(topic, payload, qos, bool(retain), properties, expires_at)
            held[3].append(Inflight(seq, packet_id, _STATES[state], message))
    for client_id, packet_id in incoming:
        if (held := parts.get(client_id)) is not None:
            held[4].append(packet_id)
    return Snapshot(
        retained=[
            Message(topic, payload, qos, bool(retain), properties, expires_at)
            for topic, payload, qos, retain, properties, expires_at in retained
        ],
        sessions=[StoredSession(*held) for held in parts.values()],
        last_seq=int(last_seq),
    )


_STATES = {state.value: state for state in InflightState}
