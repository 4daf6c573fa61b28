"""The commands store seam: the protocol, and its in-memory, SQLite and PostgreSQL implementations.

Every implementation passes one contract suite (tests/integration/commands/test_store_contract.py).
"""

from typing import assert_never

from commands.stores.memory import MemoryCommandStore
from commands.stores.postgres import PostgresCommandStore
from commands.stores.protocol import CommandQuery, CommandStore
from commands.stores.sqlite import SqliteCommandStore
from kernel import Database, PostgresDatabase, SqliteDatabase

__all__ = [
    "CommandQuery",
    "CommandStore",
    "MemoryCommandStore",
    "PostgresCommandStore",
    "SqliteCommandStore",
    "command_store",
]


def command_store(db: Database) -> CommandStore:
    """The commands store on `db`, of its backend; enter it (`async with`) after the database."""
    match db:
        case SqliteDatabase():
            return SqliteCommandStore(db)
        case PostgresDatabase():
            return PostgresCommandStore(db)
        case _:
            assert_never(db)
