"""Building the rules engine from settings: its store, its compiler, the rules file and zones."""

from __future__ import annotations

import contextlib

from fleethub.settings import Settings, StoreSettings
from kernel import ConfigError
from rules import Compiler, RuleConfigError, Zone
from rules.definitions import RuleDefinition, load_rules_file
from rules.engine import EngineOptions, RulesEngine
from rules.stores.postgres import PostgresRulesStore
from rules.stores.protocol import RulesStore
from rules.stores.sqlite import SqliteRulesStore
from twin import SqliteStore, Store


def rules_engine(settings: Settings, twins: Store) -> RulesEngine | None:
    """The engine over the hub's database, with the rules file and zones read; None when off.

    Raises `ConfigError` for a bad rules file or zone. Enter `engine.store`, then the engine.
    """
    rules = settings.rules
    if not rules.enabled:
        return None
    definitions: list[RuleDefinition] = []
    zones: dict[str, Zone] = dict(rules.zones)
    try:
        if rules.zones_file:
            _, file_zones = load_rules_file(rules.zones_file)
            zones.update(file_zones)
        if rules.file:
            definitions, file_zones = load_rules_file(rules.file)
            zones.update(file_zones)
    except RuleConfigError as exc:
        raise ConfigError(str(exc)) from None
    # Alerts go through the ingest store's writer connection when it is SQLite: two
    # writers on one file wait for each other in SQLite's busy handler (alert p99 143 ms).
    writer = twins if isinstance(twins, SqliteStore) else None
    return RulesEngine(
        rules_store(settings.store, writer=writer),
        twins,
        compiler=Compiler(limits=rules.limits),
        options=EngineOptions(
            recheck_s=rules.recheck_s, backtest_max_rows=rules.backtest_max_rows, max_rules=rules.max_rules
        ),
        file_rules=definitions,
        file_zones=zones,
    )


def rules_store(settings: StoreSettings, *, writer: SqliteStore | None = None) -> RulesStore:
    """The rules store beside the twin store `settings.url` names, in the same database.

    With SQLite, `writer` (the open twin store) lends its writer connection.
    """
    url = settings.url
    if url.startswith("sqlite://"):
        return SqliteRulesStore(url, synchronous=settings.sqlite_synchronous, writer=writer)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresRulesStore(url)
    raise ConfigError(f"setting 'store.url' must be a sqlite:/// or postgresql:// URL, got {url!r}")


async def start_rules(stack: contextlib.AsyncExitStack, engine: RulesEngine) -> None:
    """Open the rules store and start the engine on `stack`; a bad stored or file rule is a `ConfigError`."""
    await stack.enter_async_context(engine.store)
    try:
        await stack.enter_async_context(engine)
    except RuleConfigError as exc:
        raise ConfigError(str(exc)) from None
