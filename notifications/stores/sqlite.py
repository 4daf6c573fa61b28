"""The notifications store on SQLite: the hub's database file, through its one writer and its readers.

The tables come from `migrations/sqlite/0050_notifications.sql`, applied when the database opens.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from kernel import SqliteDatabase
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

_INSERT_ITEM = f"INSERT OR IGNORE INTO notifications ({ITEM}) VALUES ({', '.join('?' * 8)})"
_UPSERT_DELIVERY = f"INSERT OR REPLACE INTO notification_deliveries ({DELIVERY}) VALUES ({', '.join('?' * 10)})"


def _transaction(conn: sqlite3.Connection, statements: list[Statement], many: list[tuple[str, list[Any]]]) -> int:
    conn.execute("BEGIN IMMEDIATE")
    try:
        changed = conn.execute(*statements[0]).rowcount if statements else 0
        for sql, args in statements[1:]:
            conn.execute(sql, args)
        before = conn.total_changes
        for sql, rows in many:
            conn.executemany(sql, rows)
        if many:
            changed = conn.total_changes - before
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return changed


class SqliteNotificationStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def _write(
        self,
        statements: list[Statement],
        audit: AuditEntry | None = None,
        many: list[tuple[str, list[Any]]] | None = None,
    ) -> int:
        if audit is not None:
            statements = [*statements, audit_insert(audit, "?")]
        return await self.db.write(_transaction, statements, many or [])

    async def list_channels(self) -> list[Channel]:
        rows = await self.db.fetch(
            "SELECT id, body, created_at, updated_at, owner FROM notification_channels ORDER BY id"
        )
        return [Channel(r[0], decode_body(r[1]), r[2], r[3], r[4]) for r in rows]

    async def put_channel(self, channel: Channel, *, audit: AuditEntry | None = None) -> None:
        sql = (
            "INSERT OR REPLACE INTO notification_channels (id, body, owner, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?)"
        )
        args = (channel.id, encode(channel.body).decode(), channel.owner, channel.created_at, channel.updated_at)
        await self._write([(sql, args)], audit)

    async def delete_channel(self, channel_id: str, *, audit: AuditEntry | None = None) -> bool:
        statements: list[Statement] = [
            ("DELETE FROM notification_channels WHERE id = ?", (channel_id,)),
            ("DELETE FROM notifications WHERE channel_id = ? AND delivery_id IS NULL", (channel_id,)),
        ]
        return bool(await self._write(statements, audit))

    async def add_notifications(self, items: Sequence[Notification]) -> int:
        if not items:
            return 0
        return await self._write([], None, [(_INSERT_ITEM, [item_args(i) for i in items])])

    async def pending(self, limit: int, channel_id: str | None = None) -> list[Notification]:
        if channel_id is None:
            sql = f"SELECT {ITEM} FROM notifications WHERE delivery_id IS NULL ORDER BY created_at, id LIMIT ?"
            rows = await self.db.fetch(sql, (limit,))
        else:
            sql = (
                f"SELECT {ITEM} FROM notifications WHERE delivery_id IS NULL AND channel_id = ? "
                "ORDER BY created_at, id LIMIT ?"
            )
            rows = await self.db.fetch(sql, (channel_id, limit))
        return [item_of(r) for r in rows]

    async def pending_channels(self) -> list[str]:
        sql = "SELECT DISTINCT channel_id FROM notifications WHERE delivery_id IS NULL ORDER BY channel_id"
        return [r[0] for r in await self.db.fetch(sql)]

    async def create_delivery(self, delivery: Delivery, item_ids: Sequence[str]) -> None:
        await self._write(
            [(_UPSERT_DELIVERY, delivery_args(delivery))],
            None,
            [("UPDATE notifications SET delivery_id = ? WHERE id = ?", [(delivery.id, i) for i in item_ids])],
        )

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        rows = await self.db.fetch(
            f"SELECT {DELIVERY} FROM notification_deliveries WHERE state = 'pending' AND next_at <= ? "
            "ORDER BY next_at, id LIMIT ?",
            (now, limit),
        )
        return [delivery_of(r) for r in rows]

    async def delivery_items(self, delivery_id: str) -> list[Notification]:
        rows = await self.db.fetch(
            f"SELECT {ITEM} FROM notifications WHERE delivery_id = ? ORDER BY created_at, id", (delivery_id,)
        )
        return [item_of(r) for r in rows]

    async def update_delivery(self, delivery: Delivery) -> None:
        await self._write([(_UPSERT_DELIVERY, delivery_args(delivery))])

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        rows = await self.db.fetch(f"SELECT {DELIVERY} FROM notification_deliveries WHERE id = ?", (delivery_id,))
        return delivery_of(rows[0]) if rows else None

    async def list_deliveries(self, query: DeliveryQuery) -> list[Delivery]:
        tail, args = delivery_where(query, "?")
        rows = await self.db.fetch(f"SELECT {DELIVERY} FROM notification_deliveries{tail}", args)
        return [delivery_of(r) for r in rows]

    async def replay(self, delivery_id: str, now: float, *, audit: AuditEntry | None = None) -> bool:
        sql = (
            "UPDATE notification_deliveries SET state = ?, attempts = 0, next_at = ?, updated_at = ? "
            "WHERE id = ? AND state = ?"
        )
        args = (DeliveryState.PENDING.value, now, now, delivery_id, DeliveryState.DEAD.value)
        return bool(await self._write([(sql, args)], audit))
