"""The rules store seam: definitions, zones, alerts and pending `for` windows.

`protocol` holds the `RulesStore` protocol and the shapes it stores; `memory`,
`sqlite` and `postgres` implement it, and all pass one contract suite
(tests/integration/rules/test_store_contract.py).
"""

from typing import assert_never

from kernel import Database, PostgresDatabase, SqliteDatabase
from rules.stores.memory import MemoryRulesStore
from rules.stores.postgres import PostgresRulesStore
from rules.stores.protocol import PendingTimer, RulesStore, RulesWrite, TimerKind
from rules.stores.sqlite import SqliteRulesStore

__all__ = [
    "MemoryRulesStore",
    "PendingTimer",
    "PostgresRulesStore",
    "RulesStore",
    "RulesWrite",
    "SqliteRulesStore",
    "TimerKind",
    "rules_store",
]


def rules_store(db: Database) -> RulesStore:
    """The rules store on `db`, of its backend; enter it (`async with`) after the database."""
    match db:
        case SqliteDatabase():
            return SqliteRulesStore(db)
        case PostgresDatabase():
            return PostgresRulesStore(db)
        case _:
            assert_never(db)
