"""The rules store seam: definitions, zones, alerts and pending `for` windows.

`protocol` holds the `RulesStore` protocol and the shapes it stores; `memory` and `sql`
(SQLite or PostgreSQL) implement it, and both pass one contract suite
(tests/integration/rules/test_store_contract.py).
"""

from kernel import Database
from rules.stores.memory import MemoryRulesStore
from rules.stores.protocol import PendingTimer, RulesStore, RulesWrite, TimerKind
from rules.stores.sql import SqlRulesStore

__all__ = [
    "MemoryRulesStore",
    "PendingTimer",
    "RulesStore",
    "RulesWrite",
    "SqlRulesStore",
    "TimerKind",
    "rules_store",
]


def rules_store(db: Database) -> RulesStore:
    """The rules store on `db`; enter it (`async with`) after the database."""
    return SqlRulesStore(db)
