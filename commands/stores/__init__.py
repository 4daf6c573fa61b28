"""The commands store seam: the protocol, and its in-memory and SQL (SQLite or PostgreSQL) implementations.

Every implementation passes one contract suite (tests/integration/commands/test_store_contract.py).
"""

from commands.stores.memory import MemoryCommandStore
from commands.stores.protocol import CommandQuery, CommandStore
from commands.stores.sql import SqlCommandStore
from kernel import Database

__all__ = [
    "CommandQuery",
    "CommandStore",
    "MemoryCommandStore",
    "SqlCommandStore",
    "command_store",
]


def command_store(db: Database) -> CommandStore:
    """The commands store on `db`; enter it (`async with`) after the database."""
    return SqlCommandStore(db)
