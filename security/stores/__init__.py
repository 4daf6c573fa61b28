"""The security store seam: vehicle credentials, users, API tokens and the audit log.

`protocol` holds the `SecurityStore` protocol; `memory`, `sqlite` and `postgres`
implement it, and all pass one contract suite (tests/integration/security/test_store_contract.py).
"""

from security.stores.memory import MemorySecurityStore
from security.stores.postgres import PostgresSecurityStore
from security.stores.protocol import AlreadyExists, SecurityStore
from security.stores.sqlite import SqliteSecurityStore

__all__ = ["AlreadyExists", "MemorySecurityStore", "PostgresSecurityStore", "SecurityStore", "SqliteSecurityStore"]
