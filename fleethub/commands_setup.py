"""Building the command service from settings: its store on the hub's database, and preconditions."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry

from commands import CommandMetrics, CommandService, command_store
from fleethub.settings import Settings
from kernel import Database
from rules import Compiler, RulePreconditions, Zone
from twin import TwinService


def command_service(
    settings: Settings,
    db: Database,
    twins: TwinService,
    zones: Callable[[], Mapping[str, Zone]] | None = None,
    registry: CollectorRegistry | None = None,
) -> CommandService:
    """Enter `service.store`, then the service; set `channel` and `publisher` once the broker runs."""
    return CommandService(
        command_store(db),
        twins,
        settings=settings.commands,
        limits=settings.limits,
        preconditions=RulePreconditions(Compiler(limits=settings.rules.limits), zones),
        metrics=CommandMetrics(registry) if registry is not None else None,
    )
