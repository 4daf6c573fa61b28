"""Worker mode and the console's live feed: announce what this node changes, hear what the others change."""

from __future__ import annotations

import contextlib

from cluster import ClusterWorker, EventAnnouncer, ListenMetrics, LiveRelay
from commands import CommandService
from console import Console
from rules import RulesEngine
from twin import Store


async def relay_live(
    stack: contextlib.AsyncExitStack,
    cluster: ClusterWorker,
    store: Store,
    console: Console | None,
    rules: RulesEngine | None,
    commands: CommandService | None,
    metrics: ListenMetrics | None = None,
) -> LiveRelay | None:
    """Tee this node's alert and command events to the others; with a console, feed it what they change.

    Returns the console's relay (None without a console), whose state `/healthz` reports.

    Twin changes are announced by a trigger in the database (`cluster.announce`), so only
    events need a tee here. Every node announces, with or without a console of its own.
    """
    s = cluster.settings
    announcer = EventAnnouncer(cluster.db, cluster.worker_id, max_queued=s.live_events_max)
    await stack.enter_async_context(announcer)
    if rules is not None:
        rules.publisher = announcer.tee(rules.publisher)
    if commands is not None:
        commands.publisher = announcer.tee(commands.publisher)
    if console is None:
        return None
    relay = LiveRelay(
        cluster.db,
        store,
        console.feed,
        writer=cluster.worker_id,
        interval_s=console.settings.live_interval_s,
        max_pending=s.live_max_pending,
        read_batch=s.live_read_batch,
        open_alerts=console.open_alerts,
        metrics=metrics,
    )
    await stack.enter_async_context(relay)
    return relay
