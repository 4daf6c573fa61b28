"""The notifications store seam: `protocol` holds `NotificationStore`; `memory` and `sql` (SQLite or
PostgreSQL) implement it, and both pass one contract suite (tests/integration/notifications/test_store_contract.py)."""

from kernel import Database
from notifications.stores.memory import MemoryNotificationStore
from notifications.stores.protocol import NotificationStore
from notifications.stores.sql import SqlNotificationStore

__all__ = [
    "MemoryNotificationStore",
    "NotificationStore",
    "SqlNotificationStore",
    "notification_store",
]


def notification_store(db: Database) -> NotificationStore:
    """The notifications store on `db`; enter it (`async with`) after the database."""
    return SqlNotificationStore(db)
