"""Bare amqtt as a process under test: `python -m bench.amqtt_server --port P --plugin noop|shadow`.

`noop` is the ceiling: amqtt's own connection and PUBLISH handling with one plugin that
only counts messages. `shadow` runs amqtt's device-shadow plugin (`amqtt.contrib.shadows`)
unchanged, wrapped only to count what happens to each update: applied, or which
exception it raised (amqtt runs plugin hooks as background tasks and drops their
exceptions unless logging is at DEBUG). Counts are printed as JSON every second and
once more on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import signal
import sys
import time
from typing import Any

from amqtt.broker import Broker
from amqtt.plugins.base import BasePlugin
from amqtt.session import ApplicationMessage

COUNTS: dict[str, Any] = {"received": 0, "applied": 0, "errors": collections.Counter()}


class NoopPlugin(BasePlugin):  # type: ignore[misc]  # amqtt ships no type information
    async def on_broker_message_received(self, *, client_id: str, message: ApplicationMessage) -> None:
        COUNTS["received"] += 1


def _shadow_plugin() -> type:
    from amqtt.contrib.shadows.plugin import ShadowPlugin

    class CountingShadowPlugin(ShadowPlugin):  # type: ignore[misc]
        async def on_broker_message_received(self, *, client_id: str, message: ApplicationMessage) -> None:
            COUNTS["received"] += 1
            try:
                await super().on_broker_message_received(client_id=client_id, message=message)
            except Exception as exc:
                COUNTS["errors"][type(exc).__name__] += 1
                return
            if message.topic.endswith("/update"):
                COUNTS["applied"] += 1

    return CountingShadowPlugin


def _emit(event: str) -> None:
    line = {"event": event, "t": time.time(), **COUNTS, "errors": dict(COUNTS["errors"])}
    print(json.dumps(line), flush=True)


async def main(port: int, plugin: str, database: str | None) -> None:
    plugins: dict[str, Any] = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
    if plugin == "noop":
        plugins["bench.amqtt_server.NoopPlugin"] = {}
    else:
        cls = _shadow_plugin()
        sys.modules[__name__].CountingShadowPlugin = cls  # type: ignore[attr-defined]
        plugins["bench.amqtt_server.CountingShadowPlugin"] = {"connection": database}
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": plugins,
        "timeout_disconnect_delay": 0,
    }
    logging.basicConfig(level=logging.ERROR)
    broker = Broker(config)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _emit("started")
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            _emit("counts")
    await broker.shutdown()
    _emit("stopped")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--plugin", choices=["noop", "shadow"], default="noop")
    parser.add_argument("--database", help="SQLAlchemy async URL for the shadow plugin")
    args = parser.parse_args()
    if __package__ in (None, ""):
        sys.exit("run as `python -m bench.amqtt_server`")
    # Plugins are found by dotted name; make this module importable under its package name.
    sys.modules.setdefault("bench.amqtt_server", sys.modules[__name__])
    asyncio.run(main(args.port, args.plugin, args.database))
