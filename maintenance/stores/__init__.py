"""The maintenance store seam: `protocol` holds `MaintenanceStore`; `memory`, `sqlite` and `postgres`
implement it (`sql` holds what the last two share), and all pass one contract suite
(tests/integration/maintenance/test_store_contract.py)."""

from typing import assert_never

from kernel import Database, PostgresDatabase, SqliteDatabase
from maintenance.stores.memory import MemoryMaintenanceStore
from maintenance.stores.postgres import PostgresMaintenanceStore
from maintenance.stores.protocol import MaintenanceStore, RecordQuery
from maintenance.stores.sqlite import SqliteMaintenanceStore

__all__ = [
    "MaintenanceStore",
    "MemoryMaintenanceStore",
    "PostgresMaintenanceStore",
    "RecordQuery",
    "SqliteMaintenanceStore",
    "maintenance_store",
]


def maintenance_store(db: Database) -> MaintenanceStore:
    """The maintenance store on `db`, of its backend; enter it (`async with`) after the database."""
    match db:
        case SqliteDatabase():
            return SqliteMaintenanceStore(db)
        case PostgresDatabase():
            return PostgresMaintenanceStore(db)
        case _:
            assert_never(db)
