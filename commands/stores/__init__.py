"""The commands store seam: the protocol, and its in-memory, SQLite and PostgreSQL implementations.

Every implementation passes one contract suite (tests/integration/commands/test_store_contract.py).
"""

from commands.stores.memory import MemoryCommandStore
from commands.stores.postgres import PostgresCommandStore
from commands.stores.protocol import CommandQuery, CommandStore
from commands.stores.sqlite import SqliteCommandStore

__all__ = ["CommandQuery", "CommandStore", "MemoryCommandStore", "PostgresCommandStore", "SqliteCommandStore"]
