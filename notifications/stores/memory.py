"""The notifications store in memory: for unit tests and as the reference for the contract suite."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Self

import msgspec

from notifications.model import Channel, Delivery, DeliveryQuery, DeliveryState, Notification
from security import AuditEntry


class MemoryNotificationStore:
    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}
        self.items: dict[str, Notification] = {}
        self._keys: set[tuple[str, str]] = set()
        self.deliveries: dict[str, Delivery] = {}
        self.audit: list[AuditEntry] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def _audit(self, audit: AuditEntry | None) -> None:
        if audit is not None:
            self.audit.append(audit)

    async def list_channels(self) -> list[Channel]:
        return [self.channels[k] for k in sorted(self.channels)]

    async def put_channel(self, channel: Channel, *, audit: AuditEntry | None = None) -> None:
        self.channels[channel.id] = channel
        self._audit(audit)

    async def delete_channel(self, channel_id: str, *, audit: AuditEntry | None = None) -> bool:
        found = self.channels.pop(channel_id, None) is not None
        for item in [i for i in self.items.values() if i.channel_id == channel_id and i.delivery_id is None]:
            del self.items[item.id]
            self._keys.discard((item.channel_id, item.key))
        self._audit(audit)
        return found

    async def add_notifications(self, items: Sequence[Notification]) -> int:
        added = 0
        for item in items:
            if (item.channel_id, item.key) in self._keys:
                continue
            self._keys.add((item.channel_id, item.key))
            self.items[item.id] = item
            added += 1
        return added

    async def pending(self, limit: int, channel_id: str | None = None) -> list[Notification]:
        found = sorted(
            (
                i
                for i in self.items.values()
                if i.delivery_id is None and (channel_id is None or i.channel_id == channel_id)
            ),
            key=lambda i: (i.created_at, i.id),
        )
        return found[:limit]

    async def pending_channels(self) -> list[str]:
        return sorted({i.channel_id for i in self.items.values() if i.delivery_id is None})

    async def create_delivery(self, delivery: Delivery, item_ids: Sequence[str]) -> int:
        free = [i for i in item_ids if self.items[i].delivery_id is None]
        if item_ids and not free:
            return 0
        taken = len(free) if item_ids else delivery.items
        self.deliveries[delivery.id] = msgspec.structs.replace(delivery, items=taken)
        for item_id in free:
            self.items[item_id] = msgspec.structs.replace(self.items[item_id], delivery_id=delivery.id)
        return len(free)

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        due = [d for d in self.deliveries.values() if d.state is DeliveryState.PENDING and d.next_at <= now]
        due.sort(key=lambda d: (d.next_at, d.id))
        return [msgspec.structs.replace(d) for d in due[:limit]]

    async def claim_delivery(self, delivery_id: str, now: float, until: float) -> bool:
        found = self.deliveries.get(delivery_id)
        if found is None or found.state is not DeliveryState.PENDING or found.next_at > now:
            return False
        found.next_at = until
        return True

    async def delivery_items(self, delivery_id: str) -> list[Notification]:
        found = [i for i in self.items.values() if i.delivery_id == delivery_id]
        return sorted(found, key=lambda i: (i.created_at, i.id))

    async def update_delivery(self, delivery: Delivery) -> None:
        self.deliveries[delivery.id] = msgspec.structs.replace(delivery)

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        found = self.deliveries.get(delivery_id)
        return msgspec.structs.replace(found) if found else None

    async def list_deliveries(self, query: DeliveryQuery) -> list[Delivery]:
        found = [
            d
            for d in self.deliveries.values()
            if (query.state is None or d.state is query.state)
            and (query.channel_id is None or d.channel_id == query.channel_id)
            and (query.before is None or (d.created_at, d.id) < query.before)
        ]
        found.sort(key=lambda d: (d.created_at, d.id), reverse=True)
        return [msgspec.structs.replace(d) for d in found[: query.limit]]

    async def replay(self, delivery_id: str, now: float, *, audit: AuditEntry | None = None) -> bool:
        found = self.deliveries.get(delivery_id)
        if found is None or found.state is not DeliveryState.DEAD:
            return False
        found.state, found.attempts, found.next_at, found.updated_at = DeliveryState.PENDING, 0, now, now
        self._audit(audit)
        return True
