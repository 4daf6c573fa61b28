"""The notifications store seam: `protocol` holds `NotificationStore`; `memory`, `sqlite` and
`postgres` implement it (`sql` holds what the last two share), and all pass one contract suite
(tests/integration/notifications/test_store_contract.py)."""

from typing import assert_never

from kernel import Database, PostgresDatabase, SqliteDatabase
from notifications.stores.memory import MemoryNotificationStore
from notifications.stores.postgres import PostgresNotificationStore
from notifications.stores.protocol import NotificationStore
from notifications.stores.sqlite import SqliteNotificationStore

__all__ = [
    "MemoryNotificationStore",
    "NotificationStore",
    "PostgresNotificationStore",
    "SqliteNotificationStore",
    "notification_store",
]


def notification_store(db: Database) -> NotificationStore:
    """The notifications store on `db`, of its backend; enter it (`async with`) after the database."""
    match db:
        case SqliteDatabase():
            return SqliteNotificationStore(db)
        case PostgresDatabase():
            return PostgresNotificationStore(db)
        case _:
            assert_never(db)
