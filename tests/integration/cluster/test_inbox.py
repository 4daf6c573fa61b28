"""The inbox table on a real PostgreSQL: what a worker writes is what the owner takes, in order, once."""

import asyncio

import psycopg
import pytest

from cluster.inbox import INBOX_CHANNEL, Inbox
from kernel import PostgresDatabase
from twin import Inbound, MessageKind

pytestmark = pytest.mark.postgres


def _item(vid: str, n: int, *, subtopic: str = "", payload: bytes | None = None) -> Inbound:
    kind = MessageKind.COMMAND_RESULT if subtopic else MessageKind.TELEMETRY
    body = payload if payload is not None else b'{"n": %d}' % n
    return Inbound(vid, kind, body, 1_700_000_000.0 + n / 8, 1, subtopic=subtopic, extra={"n": str(n)})


def _same(a: Inbound, b: Inbound) -> bool:
    fields = ("vehicle_id", "kind", "payload", "received_at", "subtopic", "extra")
    return all(getattr(a, f) == getattr(b, f) for f in fields)


async def test_put_take_delete_in_order_and_owners_are_told(pg_url: str) -> None:
    """COPY keeps bytes, odd command ids and the order; NOTIFY names the partitions; take deletes what is done."""
    awkward = _item("v-1", 2, subtopic="id\twith\\tab\nand\rbreaks", payload=b"\x00\\x\\\\\t\n\xff")
    written = [(3, _item("v-1", 1)), (3, awkward), (5, _item("v-2", 3)), (3, _item("v-1", 4)), (7, _item("v-9", 5))]
    async with (
        PostgresDatabase(pg_url, pool_min_size=1, pool_max_size=2) as db,
        await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as listener,
    ):
        await listener.execute(f"LISTEN {INBOX_CHANNEL}")
        inbox = Inbox(db)
        await inbox.put(written)
        note = await asyncio.wait_for(anext(listener.notifies()), 5)
        assert note.payload == "3 5 7"

        first = await inbox.take([3, 5], 3)
        assert [f.item.extra["n"] for f in first] == ["1", "2", "3"]
        assert all(_same(f.item, item) for f, (_, item) in zip(first, written, strict=False))
        # Not yet done: the same rows come again (the owner's pipeline has not committed them).
        assert [f.id for f in await inbox.take([3, 5], 3)] == [f.id for f in first]
        # Still in the pipeline: left out of the next take.
        busy = await inbox.take([3, 5], 3, busy=[f.id for f in first])
        assert [f.item.extra["n"] for f in busy] == ["4"]
        # Done: deleted by the statement that takes the next rows.
        second = await inbox.take([3, 5], 3, done=[f.id for f in first])
        assert [f.item.extra["n"] for f in second] == ["4"]
        assert await inbox.waiting() == 2
        await inbox.done([f.id for f in second])
        assert await inbox.waiting() == 1  # partition 7's row waits for its own owner
        assert [f.item.vehicle_id for f in await inbox.take([7], 10)] == ["v-9"]
