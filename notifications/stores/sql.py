"""What the SQLite and PostgreSQL notification stores share: columns, rows and query building."""

from __future__ import annotations

from typing import Any

import msgspec

from notifications.model import ChannelBody, Delivery, DeliveryQuery, DeliveryState, Notification, NotificationKind

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


def delivery_where(query: DeliveryQuery, mark: str) -> tuple[str, list[Any]]:
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
