"""The security store seam: vehicle credentials, users, API tokens and the audit log.

`protocol` holds the `SecurityStore` protocol; `memory`, `sqlite` and `postgres`
implement it (`sql` holds what the last two share), and all pass one contract suite
(tests/integration/security/test_store_contract.py).
"""

from typing import assert_never

from kernel import Database, PostgresDatabase, SqliteDatabase
from security.stores.memory import MemorySecurityStore
from security.stores.postgres import PostgresSecurityStore
from security.stores.protocol import AlreadyExists, SecurityStore
from security.stores.sqlite import SqliteSecurityStore

__all__ = [
    "AlreadyExists",
    "MemorySecurityStore",
    "PostgresSecurityStore",
    "SecurityStore",
    "SqliteSecurityStore",
    "security_store",
]


def security_store(db: Database) -> SecurityStore:
    """The security store on `db`, of its backend; enter it (`async with`) after the database."""
    match db:
        case SqliteDatabase():
            return SqliteSecurityStore(db)
        case PostgresDatabase():
            return PostgresSecurityStore(db)
        case _:
            assert_never(db)
