"""The maintenance store seam: `protocol` holds `MaintenanceStore`; `memory` and `sql` (SQLite or PostgreSQL)
implement it, and both pass one contract suite (tests/integration/maintenance/test_store_contract.py)."""

from kernel import Database
from maintenance.stores.memory import MemoryMaintenanceStore
from maintenance.stores.protocol import MaintenanceStore, RecordQuery
from maintenance.stores.sql import SqlMaintenanceStore

__all__ = [
    "MaintenanceStore",
    "MemoryMaintenanceStore",
    "RecordQuery",
    "SqlMaintenanceStore",
    "maintenance_store",
]


def maintenance_store(db: Database) -> MaintenanceStore:
    """The maintenance store on `db`; enter it (`async with`) after the database."""
    return SqlMaintenanceStore(db)
