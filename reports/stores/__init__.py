"""The reports store seam: `protocol` holds `ReportStore`; `memory`, `sqlite` and `postgres`
implement it, and all pass one contract suite (tests/integration/reports/test_store_contract.py)."""

from typing import assert_never

from kernel import Database, PostgresDatabase, SqliteDatabase
from reports.stores.memory import MemoryReportStore
from reports.stores.postgres import PostgresReportStore
from reports.stores.protocol import ReportStore
from reports.stores.sqlite import SqliteReportStore

__all__ = ["MemoryReportStore", "PostgresReportStore", "ReportStore", "SqliteReportStore", "report_store"]


def report_store(db: Database) -> ReportStore:
    """The reports store on `db`, of its backend; enter it (`async with`) after the database."""
    match db:
        case SqliteDatabase():
            return SqliteReportStore(db)
        case PostgresDatabase():
            return PostgresReportStore(db)
        case _:
            assert_never(db)
