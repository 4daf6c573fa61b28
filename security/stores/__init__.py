"""The security store seam: vehicle credentials, users, API tokens and the audit log.

`protocol` holds the `SecurityStore` protocol; `memory` and `sql` (SQLite or PostgreSQL)
implement it, and both pass one contract suite (tests/integration/security/test_store_contract.py).
"""

from kernel import Database
from security.stores.memory import MemorySecurityStore
from security.stores.protocol import AlreadyExists, SecurityStore
from security.stores.sql import SqlSecurityStore

__all__ = [
    "AlreadyExists",
    "MemorySecurityStore",
    "SecurityStore",
    "SqlSecurityStore",
    "security_store",
]


def security_store(db: Database) -> SecurityStore:
    """The security store on `db`; enter it (`async with`) after the database."""
    return SqlSecurityStore(db)
