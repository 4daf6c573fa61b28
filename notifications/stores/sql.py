"""The notifications store on SQLite or PostgreSQL: the same tables (migration 0050), the same SQL.

Statements are written once with `?` placeholders and run through `kernel.Sql`; the
payload column is jsonb in PostgreSQL (`Dialect.json_mark`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from kernel import Database, SqlStore, Statement
from notifications.model import (
    Channel,
    ChannelBody,
    Delivery,
    DeliveryQuery,
    DeliveryState,
    Notification,
    NotificationKind,
)
from security import AuditEntry, audit_statement

ITEM = "id, channel_id, key, kind, severity, created_at, payload, delivery_id"
DELIVERY = "id, channel_id, state, items, created_at, next_at, attempts, last_error, delivered_at, updated_at"

encode = msgspec.json.encode
decode_body = msgspec.json.Decoder(ChannelBody).decode
_decode_payload = msgspec.json.Decoder(dict[str, Any]).decode


def item_args(i: Notification) -> tuple[Any, ...]:
    return (
        i.id,
        i.channel_id,
        i.key,
        i.kind.value,
        i.severity,
        i.created_at,
        encode(i.payload).decode(),
        i.delivery_id,
    )


def item_of(row: Any) -> Notification:
    payload = row[6] if isinstance(row[6], dict) else _decode_payload(row[6])
    return Notification(row[0], row[1], row[2], NotificationKind(row[3]), row[4], row[5], payload, row[7])


def delivery_args(d: Delivery) -> tuple[Any, ...]:
    return (
        d.id,
        d.channel_id,
        d.state.value,
        d.items,
        d.created_at,
        d.next_at,
        d.attempts,
        d.last_error,
        d.delivered_at,
        d.updated_at,
    )


def delivery_of(row: Any) -> Delivery:
    return Delivery(row[0], row[1], DeliveryState(row[2]), row[3], row[4], row[5], row[6], row[7], row[8], row[9])


def delivery_where(query: DeliveryQuery) -> tuple[str, list[Any]]:
    mark = "?"
    clauses: list[str] = []
    args: list[Any] = []
    if query.state is not None:
        clauses.append(f"state = {mark}")
        args.append(query.state.value)
    if query.channel_id is not None:
        clauses.append(f"channel_id = {mark}")
        args.append(query.channel_id)
    if query.before is not None:
        clauses.append(f"(created_at < {mark} OR (created_at = {mark} AND id < {mark}))")
        args.extend([query.before[0], query.before[0], query.before[1]])
    sql = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    sql += f" ORDER BY created_at DESC, id DESC LIMIT {mark}"
    args.append(query.limit)
    return sql, args


_UPSERT_DELIVERY = (
    f"INSERT INTO notification_deliveries ({DELIVERY}) VALUES ({', '.join(['?'] * 10)}) "
    "ON CONFLICT (id) DO UPDATE SET state = excluded.state, items = excluded.items, next_at = excluded.next_at, "
    "attempts = excluded.attempts, last_error = excluded.last_error, delivered_at = excluded.delivered_at, "
    "updated_at = excluded.updated_at"
)
_UPSERT_CHANNEL = (
    "INSERT INTO notification_channels (id, body, owner, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET body = excluded.body, owner = excluded.owner, updated_at = excluded.updated_at"
)


class SqlNotificationStore(SqlStore):
    """Channels, the outbox and deliveries in the hub's database, SQLite or PostgreSQL."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._insert_item = (
            f"INSERT INTO notifications ({ITEM}) VALUES (?, ?, ?, ?, ?, ?, {self._sql.dialect.json_mark}, ?) "
            "ON CONFLICT (channel_id, key) DO NOTHING"
        )

    async def _write(self, statements: list[Statement], audit: AuditEntry | None = None) -> int:
        """Every statement and the audit entry recording them, in one transaction; the rows the first touched."""
        if audit is not None:
            statements = [*statements, audit_statement(audit, self._sql.dialect)]
        return (await self._sql.transaction(statements))[0]

    async def list_channels(self) -> list[Channel]:
        rows = await self._sql.fetch(
            "SELECT id, body, created_at, updated_at, owner FROM notification_channels ORDER BY id"
        )
        return [Channel(r[0], decode_body(r[1]), r[2], r[3], r[4]) for r in rows]

    async def put_channel(self, channel: Channel, *, audit: AuditEntry | None = None) -> None:
        args = (channel.id, encode(channel.body).decode(), channel.owner, channel.created_at, channel.updated_at)
        await self._write([Statement(_UPSERT_CHANNEL, args)], audit)

    async def delete_channel(self, channel_id: str, *, audit: AuditEntry | None = None) -> bool:
        statements = [
            Statement("DELETE FROM notification_channels WHERE id = ?", (channel_id,)),
            Statement("DELETE FROM notifications WHERE channel_id = ? AND delivery_id IS NULL", (channel_id,)),
        ]
        return bool(await self._write(statements, audit))

    async def add_notifications(self, items: Sequence[Notification]) -> int:
        """Queue items; one whose (channel, key) is already queued is left out. The number added."""
        if not items:
            return 0
        return await self._write([Statement(self._insert_item, [item_args(i) for i in items], many=True)])

    async def pending(self, limit: int, channel_id: str | None = None) -> list[Notification]:
        if channel_id is None:
            sql = f"SELECT {ITEM} FROM notifications WHERE delivery_id IS NULL ORDER BY created_at, id LIMIT ?"
            rows = await self._sql.fetch(sql, (limit,))
        else:
            sql = (
                f"SELECT {ITEM} FROM notifications WHERE delivery_id IS NULL AND channel_id = ? "
                "ORDER BY created_at, id LIMIT ?"
            )
            rows = await self._sql.fetch(sql, (channel_id, limit))
        return [item_of(r) for r in rows]

    async def pending_channels(self) -> list[str]:
        sql = "SELECT DISTINCT channel_id FROM notifications WHERE delivery_id IS NULL ORDER BY channel_id"
        return [r[0] for r in await self._sql.fetch(sql)]

    async def create_delivery(self, delivery: Delivery, item_ids: Sequence[str]) -> int:
        if not item_ids:
            await self._write([Statement(_UPSERT_DELIVERY, delivery_args(delivery))])
            return 0
        marks = ", ".join(["?"] * len(item_ids))
        # Items another node took meanwhile are left to it: the claim only takes untaken ones, and
        # PostgreSQL re-checks `delivery_id IS NULL` on a row a concurrent claim changed.
        return await self._write(
            [
                Statement(
                    f"UPDATE notifications SET delivery_id = ? WHERE delivery_id IS NULL AND id IN ({marks})",
                    (delivery.id, *item_ids),
                ),
                Statement(_UPSERT_DELIVERY, delivery_args(delivery)),
                Statement(
                    "UPDATE notification_deliveries SET items = (SELECT count(*) FROM notifications "
                    "WHERE delivery_id = ?) WHERE id = ?",
                    (delivery.id, delivery.id),
                ),
                Statement("DELETE FROM notification_deliveries WHERE id = ? AND items = 0", (delivery.id,)),
            ]
        )

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        rows = await self._sql.fetch(
            f"SELECT {DELIVERY} FROM notification_deliveries WHERE state = 'pending' AND next_at <= ? "
            "ORDER BY next_at, id LIMIT ?",
            (now, limit),
        )
        return [delivery_of(r) for r in rows]

    async def claim_delivery(self, delivery_id: str, now: float, until: float) -> bool:
        # Moving next_at is the claim: no other node finds the delivery due until `until`.
        sql = "UPDATE notification_deliveries SET next_at = ? WHERE id = ? AND state = 'pending' AND next_at <= ?"
        return bool(await self._write([Statement(sql, (until, delivery_id, now))]))

    async def delivery_items(self, delivery_id: str) -> list[Notification]:
        rows = await self._sql.fetch(
            f"SELECT {ITEM} FROM notifications WHERE delivery_id = ? ORDER BY created_at, id", (delivery_id,)
        )
        return [item_of(r) for r in rows]

    async def update_delivery(self, delivery: Delivery) -> None:
        await self._write([Statement(_UPSERT_DELIVERY, delivery_args(delivery))])

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        rows = await self._sql.fetch(f"SELECT {DELIVERY} FROM notification_deliveries WHERE id = ?", (delivery_id,))
        return delivery_of(rows[0]) if rows else None

    async def list_deliveries(self, query: DeliveryQuery) -> list[Delivery]:
        tail, args = delivery_where(query)
        rows = await self._sql.fetch(f"SELECT {DELIVERY} FROM notification_deliveries{tail}", args)
        return [delivery_of(r) for r in rows]

    async def replay(self, delivery_id: str, now: float, *, audit: AuditEntry | None = None) -> bool:
        sql = (
            "UPDATE notification_deliveries SET state = ?, attempts = 0, next_at = ?, updated_at = ? "
            "WHERE id = ? AND state = ?"
        )
        args = (DeliveryState.PENDING.value, now, now, delivery_id, DeliveryState.DEAD.value)
        return bool(await self._write([Statement(sql, args)], audit))
