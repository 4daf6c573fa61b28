"""The notifications store seam: channels, the outbox of notifications, and deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Protocol, Self

from notifications.model import Channel, Delivery, DeliveryQuery, Notification
from security import AuditEntry


class NotificationStore(Protocol):
    """Every implementation passes tests/integration/notifications/test_store_contract.py."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def list_channels(self) -> list[Channel]: ...

    async def put_channel(self, channel: Channel, *, audit: AuditEntry | None = None) -> None: ...

    async def delete_channel(self, channel_id: str, *, audit: AuditEntry | None = None) -> bool:
        """Remove a channel and its notifications no delivery took yet; False when there was none."""
        ...

    async def add_notifications(self, items: Sequence[Notification]) -> int:
        """Queue; an item whose (channel, key) is already stored is skipped. The number queued."""
        ...

    async def pending(self, limit: int, channel_id: str | None = None) -> list[Notification]:
        """Notifications no delivery took yet (of one channel, or all), oldest first."""
        ...

    async def pending_channels(self) -> list[str]:
        """The channels with notifications no delivery took yet."""
        ...

    async def create_delivery(self, delivery: Delivery, item_ids: Sequence[str]) -> int:
        """Store the delivery and give it those of the items no delivery took yet, atomically; how many it got.

        With several hubs on one database two may offer the same items at once: each item
        goes to one delivery. A delivery offered items that all went elsewhere is not stored.
        """
        ...

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        """Pending deliveries whose next attempt is due, oldest first."""
        ...

    async def claim_delivery(self, delivery_id: str, now: float, until: float) -> bool:
        """Take a due delivery for one attempt: it is not due again (to anyone) until `until`.

        False when it is no longer pending and due (another hub claimed it, or it was sent).
        """
        ...

    async def delivery_items(self, delivery_id: str) -> list[Notification]: ...

    async def update_delivery(self, delivery: Delivery) -> None: ...

    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    async def list_deliveries(self, query: DeliveryQuery) -> list[Delivery]:
        """Newest first."""
        ...

    async def replay(self, delivery_id: str, now: float, *, audit: AuditEntry | None = None) -> bool:
        """A dead-lettered delivery back to pending, attempts reset, due now; False unless it was dead."""
        ...
