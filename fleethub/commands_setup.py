"""Building the command service from settings: its store on the hub's database, and preconditions."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry

from commands.metrics import CommandMetrics
from commands.service import CommandService
from commands.stores.memory import MemoryCommandStore
from commands.stores.postgres import PostgresCommandStore
from commands.stores.protocol import CommandStore
from commands.stores.sqlite import SqliteCommandStore
from fleethub.settings import Settings
from rules import Compiler, Zone
from rules.preconditions import RulePreconditions
from twin import TwinService
from twin.stores.sqlite import sqlite_path


def command_store(settings: Settings) -> CommandStore:
    """The commands store on the same database as the twins (its tables come with the twin store's migrations)."""
    url = settings.store.url
    if url.startswith("sqlite://"):
        if sqlite_path(url) == ":memory:":
            # An in-memory database is private to its connection; such a hub keeps nothing anyway.
            return MemoryCommandStore()
        return SqliteCommandStore(url, synchronous=settings.store.sqlite_synchronous)
    return PostgresCommandStore(url, pool_max_size=max(2, settings.store.pg_pool_max_size // 2))


def command_service(
    settings: Settings,
    twins: TwinService,
    zones: Callable[[], Mapping[str, Zone]] | None = None,
    registry: CollectorRegistry | None = None,
) -> CommandService:
    """Enter `service.store`, then the service; set `channel` and `publisher` once the broker runs."""
    return CommandService(
        command_store(settings),
        twins,
        settings=settings.commands,
        limits=settings.limits,
        preconditions=RulePreconditions(Compiler(limits=settings.rules.limits), zones),
        metrics=CommandMetrics(registry) if registry is not None else None,
    )
