"""Building the rules engine from settings: its store, its compiler, the rules file and zones."""

from __future__ import annotations

import contextlib

from fleethub.settings import Settings
from kernel import ConfigError, Database
from rules import (
    Compiler,
    EngineOptions,
    RuleConfigError,
    RuleDefinition,
    RulesEngine,
    Zone,
    load_rules_file,
    rules_store,
)
from twin import Store


def rules_engine(settings: Settings, db: Database, twins: Store) -> RulesEngine | None:
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
    return RulesEngine(
        rules_store(db),
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
