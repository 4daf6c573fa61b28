"""The notifications store on PostgreSQL: the hub's database, through its one connection pool.

The tables come from `migrations/postgres/0050_notifications.sql`, applied when the database opens.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from kernel import PostgresDatabase
from notifications.model import Channel, Delivery, DeliveryQuery, DeliveryState, Notification
from notifications.stores.sql import (
    DELIVERY,
    ITEM,
    decode_body,
    delivery_args,
    delivery_of,
    delivery_where,
    encode,
    item_args,
    item_of,
)
from security import AuditEntry, audit_insert

Statement = tuple[str, Sequence[Any]]

_INSERT_ITEM = (
    f"INSERT INTO notifications ({ITEM}) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s) "
    "ON CONFLICT (channel_id, key) DO NOTHING"
)
_UPSERT_DELIVERY = (
    f"INSERT INTO notification_deliveries ({DELIVERY}) VALUES ({', '.join(['%s'] * 10)}) "
    "ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, items = EXCLUDED.items, next_at = EXCLUDED.next_at, "
    "attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error, delivered_at = EXCLUDED.delivered_at, "
    "updated_at = EXCLUDED.updated_at"
)


class PostgresNotificationStore:
    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def _write(self, statements: list[Statement], audit: AuditEntry | None = None) -> int:
        if audit is not None:
            statements = [*statements, audit_insert(audit, "%s", jsonb=True)]
        changed = 0
        async with self.db.connection() as conn, conn.transaction():
            for i, (sql, args) in enumerate(statements):
                cur = await conn.execute(sql.encode(), args)
                if i == 0:
                    changed = cur.rowcount
        return changed

    async def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        async with self.db.connection() as conn:
            cur = await conn.execute(sql.encode(), args)
            return list(await cur.fetchall())

    async def list_channels(self) -> list[Channel]:
        rows = await self._all("SELECT id, body, created_at, updated_at, owner FROM notification_channels ORDER BY id")
        return [Channel(r[0], decode_body(r[1]), r[2], r[3], r[4]) for r in rows]

    async def put_channel(self, channel: Channel, *, audit: AuditEntry | None = None) -> None:
        sql = (
            "INSERT INTO notification_channels (id, body, owner, created_at, updated_at) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, owner = EXCLUDED.owner, "
            "updated_at = EXCLUDED.updated_at"
        )
        args = (channel.id, encode(channel.body).decode(), channel.owner, channel.created_at, channel.updated_at)
        await self._write([(sql, args)], audit)

    async def delete_channel(self, channel_id: str, *, audit: AuditEntry | None = None) -> bool:
        statements: list[Statement] = [
            ("DELETE FROM notification_channels WHERE id = %s", (channel_id,)),
            ("DELETE FROM notifications WHERE channel_id = %s AND delivery_id IS NULL", (channel_id,)),
        ]
        return bool(await self._write(statements, audit))

    async def add_notifications(self, items: Sequence[Notification]) -> int:
        added = 0
        async with self.db.connection() as conn, conn.transaction():
            for item in items:
                cur = await conn.execute(_INSERT_ITEM.encode(), item_args(item))
                added += cur.rowcount
        return added

    async def pending(self, limit: int, channel_id: str | None = None) -> list[Notification]:
        if channel_id is None:
            sql = f"SELECT {ITEM} FROM notifications WHERE delivery_id IS NULL ORDER BY created_at, id LIMIT %s"
            rows = await self._all(sql, (limit,))
        else:
            sql = (
                f"SELECT {ITEM} FROM notifications WHERE delivery_id IS NULL AND channel_id = %s "
                "ORDER BY created_at, id LIMIT %s"
            )
            rows = await self._all(sql, (channel_id, limit))
        return [item_of(r) for r in rows]

    async def pending_channels(self) -> list[str]:
        sql = "SELECT DISTINCT channel_id FROM notifications WHERE delivery_id IS NULL ORDER BY channel_id"
        return [r[0] for r in await self._all(sql)]

    async def create_delivery(self, delivery: Delivery, item_ids: Sequence[str]) -> None:
        async with self.db.connection() as conn, conn.transaction():
            await conn.execute(_UPSERT_DELIVERY.encode(), delivery_args(delivery))
            await conn.execute(
                b"UPDATE notifications SET delivery_id = %s WHERE id = ANY(%s)", (delivery.id, list(item_ids))
            )

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        rows = await self._all(
            f"SELECT {DELIVERY} FROM notification_deliveries WHERE state = 'pending' AND next_at <= %s "
            "ORDER BY next_at, id LIMIT %s",
            (now, limit),
        )
        return [delivery_of(r) for r in rows]

    async def delivery_items(self, delivery_id: str) -> list[Notification]:
        rows = await self._all(
            f"SELECT {ITEM} FROM notifications WHERE delivery_id = %s ORDER BY created_at, id", (delivery_id,)
        )
        return [item_of(r) for r in rows]

    async def update_delivery(self, delivery: Delivery) -> None:
        await self._write([(_UPSERT_DELIVERY, delivery_args(delivery))])

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        rows = await self._all(f"SELECT {DELIVERY} FROM notification_deliveries WHERE id = %s", (delivery_id,))
        return delivery_of(rows[0]) if rows else None

    async def list_deliveries(self, query: DeliveryQuery) -> list[Delivery]:
        tail, args = delivery_where(query, "%s")
        rows = await self._all(f"SELECT {DELIVERY} FROM notification_deliveries{tail}", args)
        return [delivery_of(r) for r in rows]

    async def replay(self, delivery_id: str, now: float, *, audit: AuditEntry | None = None) -> bool:
        sql = (
            "UPDATE notification_deliveries SET state = %s, attempts = 0, next_at = %s, updated_at = %s "
            "WHERE id = %s AND state = %s"
        )
        args = (DeliveryState.PENDING.value, now, now, delivery_id, DeliveryState.DEAD.value)
        return bool(await self._write([(sql, args)], audit))
