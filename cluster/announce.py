"""Announcing what this node changed to the consoles of the others: NOTIFY `fleethub_live`.

Twins: a statement trigger on `twins` announces the vehicle ids each statement wrote, in
the writer's transaction, so an announcement is delivered only when its change is
committed and readable. The ingest pipeline upserts a batch's twins in one statement, so
a commit gives one notification per 100 vehicles (two when it both creates and updates
twins); PostgreSQL drops duplicates within a transaction. Only connections that carry a
fence (worker mode) announce: the embedded hub, tools and migrations pay nothing.

Alert and command events (`alerts/...`, `events/commands/...`): the hub's publishers are
teed into a bounded queue that one task sends, once the event is stored, as one
round trip per pass. An event too large for a notification is written to
`cluster_live_events` and announced by its id.

Twins deleted (by any connection, fenced or not: no node's own path announces them) are
announced by a second statement trigger, `d` with the vehicle ids.

Notifications are text, fields separated by newlines: `kind`, the writer's worker id
(empty for a deletion without a fence), then the body — `t` and `d`: vehicle ids
separated by spaces; `e`: the topic, a newline, the
event's JSON; `r`: the id of a `cluster_live_events` row; `x`: events were dropped
here, reload them. The channel carries the schema's name, so hubs on other schemas of the
same database do not hear each other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import psycopg
import structlog

from console import ALERT_PREFIX, COMMAND_PREFIX, Publisher
from kernel import PostgresDatabase, cancel_and_wait

log = structlog.get_logger(__name__)

# The channel's name in SQL: one per schema, within PostgreSQL's 63-byte limit on names.
CHANNEL_SQL = "left('fleethub_live:' || current_schema(), 63)"
# PostgreSQL refuses payloads of 8000 bytes or more; a vehicle id is at most 64 bytes and a
# worker id 64, so 100 ids with their separators stay under 6,700 bytes.
IDS_PER_NOTICE = 100
MAX_NOTICE_BYTES = 7900
# Events announced by reference are read within seconds; older rows are deleted as new ones come.
_EVENT_ROWS_KEPT_S = 300

TWINS, EVENT, EVENT_REF, EVENTS_LOST, DELETED = "t", "e", "r", "x", "d"

LIVE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION fleethub_live_notify() RETURNS trigger LANGUAGE plpgsql AS $live$
DECLARE
    writer text := nullif(current_setting('fleethub.fence', true), '')::jsonb->>'w';
    ids text;
BEGIN
    IF writer IS NULL THEN
        RETURN NULL;
    END IF;
    FOR ids IN
        SELECT string_agg(vehicle_id, ' ' ORDER BY vehicle_id)
        FROM (SELECT vehicle_id, (row_number() OVER (ORDER BY vehicle_id) - 1) / {IDS_PER_NOTICE} AS chunk
              FROM changed) numbered
        GROUP BY chunk
    LOOP
        PERFORM pg_notify({CHANNEL_SQL}, '{TWINS}' || chr(10) || writer || chr(10) || ids);
    END LOOP;
    RETURN NULL;
END
$live$
"""

# Deletions are announced whoever deletes (a tool, psql, the embedded hub): no node's own path
# tells its console of them, and they are rare. The writer is empty without a fence.
DELETE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION fleethub_live_deleted() RETURNS trigger LANGUAGE plpgsql AS $gone$
DECLARE
    writer text := coalesce(nullif(current_setting('fleethub.fence', true), '')::jsonb->>'w', '');
    ids text;
BEGIN
    FOR ids IN
        SELECT string_agg(vehicle_id, ' ' ORDER BY vehicle_id)
        FROM (SELECT vehicle_id, (row_number() OVER (ORDER BY vehicle_id) - 1) / {IDS_PER_NOTICE} AS chunk
              FROM gone) numbered
        GROUP BY chunk
    LOOP
        PERFORM pg_notify({CHANNEL_SQL}, '{DELETED}' || chr(10) || writer || chr(10) || ids);
    END LOOP;
    RETURN NULL;
END
$gone$
"""

# Transition tables allow one event per trigger; an upsert fires both (inserted and updated rows).
LIVE_TRIGGERS = (
    *(
        f"CREATE OR REPLACE TRIGGER fleethub_live_{event.lower()} AFTER {event} ON twins "
        "REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION fleethub_live_notify()"
        for event in ("INSERT", "UPDATE")
    ),
    "CREATE OR REPLACE TRIGGER fleethub_live_delete AFTER DELETE ON twins "
    "REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION fleethub_live_deleted()",
)


async def install_live(conn: psycopg.AsyncConnection[Any]) -> None:
    """Create the twins' announcement trigger (inside `cluster.install`'s transaction and lock)."""
    await conn.execute(LIVE_FUNCTION.encode())
    await conn.execute(DELETE_FUNCTION.encode())
    for statement in LIVE_TRIGGERS:
        await conn.execute(statement.encode())


async def channel_of(conn: psycopg.AsyncConnection[Any]) -> str:
    cur = await conn.execute(f"SELECT {CHANNEL_SQL}".encode())
    row = await cur.fetchone()
    if row is None:
        raise RuntimeError("no current schema")
    return str(row[0])


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification, parsed: its kind, who wrote it, and its body."""

    kind: str
    writer: str
    body: str

    @classmethod
    def parse(cls, payload: str) -> Notice | None:
        kind, sep1, rest = payload.partition("\n")
        writer, sep2, body = rest.partition("\n")
        if not (sep1 and sep2) or kind not in (TWINS, EVENT, EVENT_REF, EVENTS_LOST, DELETED):
            return None
        return cls(kind, writer, body)

    def event(self) -> tuple[str, bytes] | None:
        """The (topic, payload) of an inline event."""
        topic, sep, payload = self.body.partition("\n")
        return (topic, payload.encode()) if sep and topic else None


def notice(kind: str, writer: str, body: str) -> str:
    return f"{kind}\n{writer}\n{body}"


def inline(writer: str, topic: str, payload: bytes) -> str | None:
    """The notification that carries this event, or None when it must go by reference."""
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        return None
    out = notice(EVENT, writer, f"{topic}\n{text}")
    return out if "\n" not in topic and len(out.encode()) <= MAX_NOTICE_BYTES else None


class EventAnnouncer:
    """Sends this node's alert and command events to the other nodes; an async context manager."""

    def __init__(self, db: PostgresDatabase, writer: str, *, max_queued: int) -> None:
        self.db = db
        self.writer = writer
        self.max_queued = max_queued
        self._queue: deque[tuple[str, bytes]] = deque()
        self._wake = asyncio.Event()
        # Events were dropped (the queue was full): the others are told to reload theirs.
        self._lost = False
        self._task: asyncio.Task[None] | None = None

    def tee(self, inner: Publisher | None) -> Publisher:
        """A publisher that queues the events other consoles show, then publishes through `inner`."""
        return _Tee(self, inner)

    def offer(self, topic: str, payload: bytes) -> None:
        if not topic.startswith((ALERT_PREFIX, COMMAND_PREFIX)):
            return
        if len(self._queue) >= self.max_queued:
            self._lost = True
        else:
            self._queue.append((topic, payload))
        self._wake.set()

    async def __aenter__(self) -> Self:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="cluster-live-announce")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            # What is queued is sent first, within a second; the rest is for the next reload.
            with contextlib.suppress(Exception):
                if self._queue:
                    await asyncio.wait_for(self.send_once(), 1.0)
            await cancel_and_wait([self._task])
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.send_once()
            # The live view is a convenience: a failed send is lost and the others reload.
            except Exception as exc:
                log.warning("could not announce events to other nodes", error=f"{type(exc).__name__}: {exc}")
                self._lost = True
                self._wake.set()
                await asyncio.sleep(1.0)

    async def send_once(self) -> None:
        """Announce everything queued in one round trip (plus one insert for events sent by reference)."""
        events = list(self._queue)
        self._queue.clear()
        lost, self._lost = self._lost, False
        if not (events or lost):
            return
        notices: list[str] = [notice(EVENTS_LOST, self.writer, "")] if lost else []
        async with self.db.connection() as conn, conn.transaction():
            pruned = False
            for topic, payload in events:
                text = inline(self.writer, topic, payload)
                if text is None:
                    if not pruned:
                        await conn.execute(
                            "DELETE FROM cluster_live_events WHERE created_at < now() - make_interval(secs => %s)",
                            (_EVENT_ROWS_KEPT_S,),
                        )
                        pruned = True
                    cur = await conn.execute(
                        "INSERT INTO cluster_live_events (topic, payload) VALUES (%s, %s) RETURNING id",
                        (topic, payload),
                    )
                    row = await cur.fetchone()
                    text = notice(EVENT_REF, self.writer, str(row[0])) if row is not None else None
                if text is not None:
                    notices.append(text)
            # In the order queued: an alert raised and cleared within one pass arrives in that order.
            await conn.execute(
                f"SELECT pg_notify({CHANNEL_SQL}, n) FROM unnest(%s::text[]) WITH ORDINALITY AS t(n, i) "
                "ORDER BY i".encode(),
                (notices,),
            )


class _Tee:
    def __init__(self, announcer: EventAnnouncer, inner: Publisher | None) -> None:
        self._announcer = announcer
        self._inner = inner

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        try:
            self._announcer.offer(topic, payload)
        # Announcing must never stand between an event and its subscribers.
        except Exception:
            log.exception("could not queue an event for other nodes", topic=topic)
        if self._inner is not None:
            await self._inner.publish(topic, payload, qos=qos, retain=retain)
