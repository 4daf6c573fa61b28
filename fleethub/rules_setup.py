"""Building the rules engine from settings: its store, its compiler, the rules file and zones."""

from __future__ import annotations

import contextlib

import structlog

from fleethub.settings import Settings
from rules import Compiler, RuleConfigError, Zone
from rules.definitions import RuleDefinition, load_rules_file
from rules.engine import EngineOptions, RulesEngine
from rules.sqlite_store import SqliteRulesStore
from twin import ConfigError, SqliteStore, Store

log = structlog.get_logger(__name__)


def rules_engine(settings: Settings, twins: Store) -> RulesEngine | None:
    """The engine over the hub's database, with the rules file and zones read; None when off.

    Raises `ConfigError` for a bad rules file or zone. Enter `engine.store`, then the engine.
    """
    rules = settings.rules
    if not rules.enabled:
        return None
    url = settings.store.url
    if not url.startswith("sqlite://"):
        if rules.file or rules.zones_file or rules.zones:
            raise ConfigError(
                "rules and alerts are stored only in SQLite so far; with a PostgreSQL store.url "
                "remove rules.file, rules.zones_file and rules.zones, or set rules.enabled = false"
            )
        log.warning("rules engine is off: rules and alerts are stored only in SQLite so far", store=url.split(":")[0])
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
        SqliteRulesStore(url, synchronous=settings.store.sqlite_synchronous, writer=writer),
        twins,
        compiler=Compiler(limits=rules.limits),
        options=EngineOptions(
            recheck_s=rules.recheck_s, backtest_max_rows=rules.backtest_max_rows, max_rules=rules.max_rules
        ),
        file_rules=definitions,
        file_zones=zones,
    )


async def start_rules(stack: contextlib.AsyncExitStack, engine: RulesEngine) -> None:
    """Open the rules store and start the engine on `stack`; a bad stored or file rule is a `ConfigError`."""
    await stack.enter_async_context(engine.store)
    try:
        await stack.enter_async_context(engine)
    except RuleConfigError as exc:
        raise ConfigError(str(exc)) from None
