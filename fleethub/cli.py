"""`fleethub`: serve, demo, migrate, sim, and the admin commands (vehicles, users, export, backup)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import msgspec
import structlog

from fleethub.logs import configure_logging
from fleethub.settings import RuntimeSettings, Settings, StoreSettings, load_settings
from kernel import ConfigError, FleethubError

log = structlog.get_logger("fleethub")

# Where `fleethub demo` keeps its data unless given a database (`serve` defaults to var/fleethub.db).
DEMO_DATABASE = "sqlite:///var/demo.db"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML settings file")
    parser.add_argument("--host", help="address the MQTT and HTTP listeners bind to (default 0.0.0.0)")
    parser.add_argument("--mqtt-port", type=int, help="MQTT TCP port (default 1883)")
    parser.add_argument("--http-port", type=int, help="HTTP API port (default 8080)")
    parser.add_argument("--database", metavar="URL", help="store URL, e.g. sqlite:///var/fleethub.db")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", choices=["auto", "console", "json"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleethub", description="MQTT hub with device twins for vehicle fleets")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the hub: MQTT broker, twin ingest and HTTP API")
    _common(serve)
    serve.add_argument(
        "--broker",
        metavar="URL",
        help="run as a worker behind this external MQTT broker (mqtt://host:port or mqtts://...); see docs/scale.md",
    )
    serve.add_argument(
        "--role", choices=["worker", "api"], help="with a shared PostgreSQL: 'api' serves HTTP without ingest"
    )
    serve.add_argument("--worker-id", metavar="NAME", help="this worker's name in partition leases (default host-pid)")
    demo = sub.add_parser("demo", help="run the hub with simulated vehicles")
    _common(demo)
    demo.add_argument("--vehicles", type=int, help="simulated vehicles (default 50)")
    demo.add_argument("--interval", type=float, help="seconds between reports per vehicle (default 2)")
    migrate = sub.add_parser("migrate", help="apply database migrations and exit")
    _common(migrate)
    sub.add_parser("sim", help="run simulated vehicles against a hub (see fleethub sim --help)", add_help=False)
    from fleethub.admin_cli import add_parsers

    add_parsers(sub, _store_flags)
    from fleethub.mosquitto_auth import add_parser as add_export

    add_export(sub, _store_flags)
    backup = sub.add_parser("backup", help="copy a SQLite store to a file, while the hub runs (online backup)")
    backup.add_argument("output", help="the backup file to write")
    _store_flags(backup)
    restore = sub.add_parser("restore", help="replace a SQLite store with a backup (stop the hub first)")
    restore.add_argument("backup", help="a file written by fleethub backup")
    restore.add_argument("--force", action="store_true", help="replace a database that holds vehicles")
    _store_flags(restore)
    return parser


def _store_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML settings file")
    parser.add_argument("--database", metavar="URL", help="store URL, e.g. sqlite:///var/fleethub.db")


def _settings(args: argparse.Namespace) -> Settings:
    if args.command in ("vehicles", "users", "backup", "restore", "export"):
        return load_settings(args.config, overrides={"store.url": args.database})
    overrides: dict[str, Any] = {
        "mqtt.host": args.host,
        "http.host": args.host,
        "mqtt.port": args.mqtt_port,
        "http.port": args.http_port,
        "store.url": args.database,
        "log.level": args.log_level,
        "log.format": args.log_format,
    }
    if args.command == "demo":
        overrides |= {"demo.vehicles": args.vehicles, "demo.interval_s": args.interval}
    if args.command == "serve":
        overrides |= {"cluster.broker": args.broker, "cluster.role": args.role, "cluster.worker_id": args.worker_id}
    settings = load_settings(args.config, overrides=overrides)
    if args.command == "demo" and settings.store.url == StoreSettings().url:
        # The demo keeps its own database, so `serve` never starts with the demo's vehicles and rules.
        settings = msgspec.structs.replace(settings, store=msgspec.structs.replace(settings.store, url=DEMO_DATABASE))
    return settings


def tune_gc(runtime: RuntimeSettings) -> None:
    """Apply the collector thresholds of `runtime` (see `RuntimeSettings` for why)."""
    if runtime.gc_threshold_young > 0:
        gc.set_threshold(runtime.gc_threshold_young, runtime.gc_threshold_middle, runtime.gc_threshold_old)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "sim":
        from firmware_sim import main as sim_main

        return sim_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"fleethub: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log.level, settings.log.format)
    tune_gc(settings.runtime)
    try:
        if args.command == "serve":
            return asyncio.run(_serve(settings))
        if args.command == "demo":
            from fleethub.demo import run_demo

            return asyncio.run(run_demo(settings))
        if args.command == "migrate":
            return asyncio.run(_migrate(settings))
        if args.command in ("backup", "restore"):
            return _backup_or_restore(settings, args)
        if args.command in ("vehicles", "users"):
            from fleethub.admin_cli import run_users, run_vehicles

            runner = run_vehicles if args.command == "vehicles" else run_users
            return asyncio.run(runner(settings, args))
        if args.command == "export":
            from fleethub.mosquitto_auth import run_export

            return asyncio.run(run_export(settings, args))
    except ConfigError as exc:
        log.error("cannot start", error=str(exc))
        print(f"fleethub: {exc}", file=sys.stderr)
        return 2
    except FleethubError as exc:
        # A refused provisioning or user command (already exists, not found, bad name).
        print(f"fleethub: {exc}", file=sys.stderr)
        return 1
    return 2


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _serve(settings: Settings) -> int:
    from fleethub.hub import Hub

    stop = stop_on_signals()
    hub = await Hub(settings).__aenter__()
    try:
        await hub.wait(stop)
    finally:
        await _stop_within(hub, settings.ingest.shutdown_timeout_s + STOP_GRACE_S)
    return 0


# Beyond the ingest drain's own budget, for the other parts' stop (a store call already waiting
# for a connection when the stop began may wait out its pool timeout).
STOP_GRACE_S = 10.0


async def _stop_within(hub: Any, budget_s: float) -> None:
    """Stop the hub; if that takes longer than `budget_s`, exit the process regardless.

    Safe because nothing is acknowledged before it is committed: what a stuck part still
    holds is resent by its senders to the next hub.
    """
    stopping = asyncio.ensure_future(hub.__aexit__(None, None, None))
    done, _ = await asyncio.wait({stopping}, timeout=budget_s)
    if stopping in done:
        stopping.result()
        return
    log.error("the hub did not stop in time; exiting with what it holds unacknowledged", budget_s=budget_s)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def _backup_or_restore(settings: Settings, args: argparse.Namespace) -> int:
    import sqlite3
    from pathlib import Path

    from fleethub.backup import backup, restore

    try:
        if args.command == "backup":
            copied = backup(settings.store.url, Path(args.output))
            verb = "backed up to"
        else:
            copied = restore(Path(args.backup), settings.store.url, force=args.force)
            verb = "restored into"
    except sqlite3.Error as exc:
        print(f"fleethub {args.command}: {exc}", file=sys.stderr)
        return 1
    print(
        f"{verb} {copied.path}: {copied.bytes} bytes, schema version {copied.schema_version}, "
        f"{copied.vehicles} vehicles, {copied.history_rows} history rows"
    )
    return 0


async def _migrate(settings: Settings) -> int:
    from fleethub.stores import database, history_options
    from twin import twin_store

    # The twin store too: on PostgreSQL it sets up partitions or TimescaleDB policies.
    async with database(settings.store) as db, twin_store(db, history_options(settings.store)):
        info = await db.info()
    print(msgspec.json.encode(info).decode())
    return 0
