"""The reports store seam: `protocol` holds `ReportStore`; `memory` and `sql` (SQLite or PostgreSQL)
implement it, and both pass one contract suite (tests/integration/reports/test_store_contract.py)."""

from kernel import Database
from reports.stores.memory import MemoryReportStore
from reports.stores.protocol import ReportStore
from reports.stores.sql import SqlReportStore

__all__ = ["MemoryReportStore", "ReportStore", "SqlReportStore", "report_store"]


def report_store(db: Database) -> ReportStore:
    """The reports store on `db`; enter it (`async with`) after the database."""
    return SqlReportStore(db)
