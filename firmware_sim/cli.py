"""`fleethub sim` (and `python -m firmware_sim`): run simulated vehicles until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import structlog

from firmware_sim.cities import CITIES, DEFAULT_CITY
from firmware_sim.config import SimConfig
from firmware_sim.errors import ConfigError
from firmware_sim.fleet import Fleet
from firmware_sim.secrets import read_secrets
from firmware_sim.stats import progress_line

_DEFAULTS = SimConfig()


def build_parser(prog: str = "fleethub sim") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Simulated vehicles that drive around a city, report telemetry over MQTT "
        "and apply the desired values the hub sends them. Runs until SIGINT or SIGTERM.",
    )
    parser.add_argument(
        "--vehicles",
        type=int,
        default=None,
        metavar="N",
        help=f"how many vehicles (default: {_DEFAULTS.vehicles}, or every vehicle of --secrets)",
    )
    parser.add_argument(
        "--secrets",
        metavar="FILE",
        help="log in to a secure hub: the vehicle_id,fleet,secret CSV that `fleethub vehicles import --output` "
        "writes; the simulated vehicles are the ones it lists",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=_DEFAULTS.interval_s,
        metavar="S",
        help="seconds between telemetry messages of one vehicle (default: %(default)s)",
    )
    parser.add_argument("--host", default=_DEFAULTS.host, help="MQTT broker host (default: %(default)s)")
    parser.add_argument("--port", type=int, default=_DEFAULTS.port, help="MQTT broker port (default: %(default)s)")
    parser.add_argument(
        "--qos", type=int, choices=(0, 1), default=_DEFAULTS.qos, help="QoS of telemetry (default: %(default)s)"
    )
    parser.add_argument(
        "--city", choices=sorted(CITIES), default=DEFAULT_CITY, help="where to drive (default: %(default)s)"
    )
    parser.add_argument(
        "--prefix", default=_DEFAULTS.prefix, help="vehicle id prefix; ids look like veh-0001 (default: %(default)s)"
    )
    parser.add_argument("--start-index", type=int, default=_DEFAULTS.start_index, help="number of the first vehicle")
    parser.add_argument("--seed", type=int, default=None, help="seed for repeatable routes (default: random, logged)")
    parser.add_argument(
        "--ramp",
        type=float,
        default=_DEFAULTS.ramp_s,
        metavar="S",
        help="spread connections over this many seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--command-failure-rate",
        type=float,
        default=_DEFAULTS.command_failure_rate,
        metavar="P",
        help="share of commands answered `failed` (default: %(default)s)",
    )
    parser.add_argument(
        "--offline-rate",
        type=float,
        default=_DEFAULTS.offline_rate,
        metavar="P",
        help="chance per vehicle per minute of going offline (default: %(default)s)",
    )
    parser.add_argument(
        "--offline-s",
        type=float,
        default=_DEFAULTS.offline_s,
        metavar="S",
        help="how long an offline period lasts (default: %(default)s)",
    )
    parser.add_argument(
        "--birth-and-will",
        action="store_true",
        help="publish 'online' and a Last Will 'offline' on vehicles/{id}/status (hub workers behind "
        "an external broker, docs/scale.md)",
    )
    parser.add_argument(
        "--progress",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between progress lines on stderr (default: %(default)s)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> SimConfig:
    secrets = read_secrets(args.secrets) if args.secrets else {}
    vehicles = args.vehicles if args.vehicles is not None else (len(secrets) or _DEFAULTS.vehicles)
    return SimConfig(
        secrets=secrets,
        vehicles=vehicles,
        interval_s=args.interval,
        host=args.host,
        port=args.port,
        qos=args.qos,
        birth_and_will=args.birth_and_will,
        city=args.city,
        prefix=args.prefix,
        seed=args.seed,
        start_index=args.start_index,
        ramp_s=args.ramp,
        command_failure_rate=args.command_failure_rate,
        offline_rate=args.offline_rate,
        offline_s=args.offline_s,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the simulator; returns the process exit code (0 after SIGINT or SIGTERM)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        # argparse exits on --help and on bad arguments; callers embedding `main` want a code.
        return exc.code if isinstance(exc.code, int) else 2
    if not args.progress > 0:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: --progress must be more than 0, got {args.progress}", file=sys.stderr)
        return 2
    try:
        config = config_from_args(args)
        _configure_logging()
        asyncio.run(_run(config, args.progress))
    except ConfigError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


async def _run(config: SimConfig, progress_every: float) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            # Not the main thread, or no signal support: Ctrl-C still ends the run, less gracefully.
            continue
        handled.append(sig)
    try:
        async with Fleet(config) as fleet:
            while not stop.is_set():
                try:
                    async with asyncio.timeout(progress_every):
                        await stop.wait()
                except TimeoutError:
                    print(progress_line(fleet.stats()), file=sys.stderr, flush=True)
        print(f"stopped: {progress_line(fleet.stats())}", file=sys.stderr, flush=True)
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


def _configure_logging() -> None:
    """A readable stderr log, unless the host program (the `fleethub` CLI) configured one."""
    if structlog.is_configured():
        return
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if sys.stderr.isatty() else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
