"""Wiring the operator console into the hub: its index and live feed watch twins, alerts and commands."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from commands import CommandService
from console import Console
from fleethub.settings import Settings
from rules import AlertQuery, RulesEngine
from security import LoginBackoff
from twin import TwinService

# Open alerts read into the console's index at start.
_OPEN_ALERTS_MAX = 100_000


def console_of(
    settings: Settings,
    service: TwinService,
    rules: RulesEngine | None,
    commands: CommandService | None,
    registry: CollectorRegistry,
) -> Console | None:
    """The console, observing twin updates and teed into the alert and command publishers; None when disabled."""
    if not settings.console.enabled:
        return None

    async def open_alerts() -> list[tuple[str, str, str]]:
        if rules is None:
            return []
        found = await rules.query_alerts(AlertQuery(open_only=True, limit=_OPEN_ALERTS_MAX))
        return [(a.id, a.vehicle_id, a.severity) for a in found]

    abuse = settings.abuse
    console = Console(
        settings.console,
        service,
        open_alerts=open_alerts,
        registry=registry,
        login_backoff=LoginBackoff(
            abuse.login_failures_before_backoff, abuse.login_backoff_base_s, abuse.login_backoff_max_s
        ),
    )
    service.observers.append(console.feed)
    if rules is not None:
        rules.publisher = console.feed.tee(rules.publisher)
    if commands is not None:
        commands.publisher = console.feed.tee(commands.publisher)
    return console
