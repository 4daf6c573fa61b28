"""`fleethub demo`: the hub plus simulated vehicles, in one command."""

from __future__ import annotations

import asyncio
import socket
import sys
from importlib import resources

import msgspec
import structlog

from broker import PortInUse
from firmware_sim import Fleet, SimConfig, distance_km, get_city
from fleethub.cli import stop_on_signals
from fleethub.http_server import HttpPortInUse
from fleethub.hub import Hub
from fleethub.settings import Settings
from rules import Circle

# Share of demo vehicles that develop a fault (overheating, tyre leak, silence, leaving the area).
DEMO_FAULT_RATE = 0.2
# About one command in twenty fails, as actuators do, so the demo shows `failed` too.
DEMO_COMMAND_FAILURE_RATE = 0.05

log = structlog.get_logger("fleethub.demo")


def _with_free_ports(settings: Settings, *, mqtt: bool, http: bool) -> Settings:
    return msgspec.structs.replace(
        settings,
        mqtt=msgspec.structs.replace(settings.mqtt, port=0) if mqtt else settings.mqtt,
        http=msgspec.structs.replace(settings.http, port=0) if http else settings.http,
    )


def _port_taken(host: str, port: int) -> bool:
    if port == 0:
        return False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the hub's own listeners bind: a port in TIME_WAIT is free, a listening one is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


async def _start_hub(settings: Settings) -> Hub:
    """Start a hub, moving to free ports when the configured ones are taken (another broker on 1883).

    The ports are probed before the hub starts, so its parts start (and log that they did) once; the
    retries below only cover a port taken between the probe and the bind.
    """
    mqtt_taken = _port_taken(settings.mqtt.host, settings.mqtt.port)
    http_taken = _port_taken(settings.http.host, settings.http.port)
    if mqtt_taken:
        print(f"MQTT port {settings.mqtt.port} is taken; using a free port instead.", file=sys.stderr)
    if http_taken:
        print(f"HTTP port {settings.http.port} is taken; using a free port instead.", file=sys.stderr)
    settings = _with_free_ports(settings, mqtt=mqtt_taken, http=http_taken)
    for _ in range(3):
        hub = Hub(settings)
        try:
            await hub.__aenter__()
        except PortInUse:
            print(f"MQTT port {settings.mqtt.port} is taken; using a free port instead.", file=sys.stderr)
            settings = _with_free_ports(settings, mqtt=True, http=False)
            continue
        except HttpPortInUse:
            print(f"HTTP port {settings.http.port} is taken; using a free port instead.", file=sys.stderr)
            settings = _with_free_ports(settings, mqtt=False, http=True)
            continue
        return hub
    raise RuntimeError("could not find free ports for the demo")


def development_mode(settings: Settings) -> Settings:
    """The demo's settings: anonymous MQTT and no API authentication, so the README's commands just work.

    `fleethub serve` keeps the secure defaults; only the demo (and tests that ask) run like this.
    """
    return msgspec.structs.replace(
        settings,
        mqtt=msgspec.structs.replace(settings.mqtt, allow_anonymous=True),
        auth=msgspec.structs.replace(settings.auth, enabled=False, public_metrics=True),
    )


def with_demo_rules(settings: Settings) -> Settings:
    """The packaged demo rules unless a rules file is set, and a service area around the demo city."""
    rules = settings.rules
    if not rules.enabled:
        return settings
    city = get_city(settings.demo.city)
    lat, lon = (city.south + city.north) / 2, (city.west + city.east) / 2
    radius_m = distance_km(lat, lon, city.north, city.east) * 1000 + 2000
    zones = {"service-area": Circle(lat=lat, lon=lon, radius_m=radius_m), **rules.zones}
    demo_file = str(resources.files("fleethub").joinpath("demo_rules.toml"))
    rules = msgspec.structs.replace(rules, file=rules.file or demo_file, zones=zones)
    return msgspec.structs.replace(settings, rules=rules)


def banner(hub: Hub, vehicles: int, prefix: str) -> str:
    http = f"http://localhost:{hub.http_port}"
    first = f"{prefix}0001"
    console = (
        f"  Console       {http}/   (live map, vehicles, alerts; no login in the demo)\n"
        if getattr(hub, "console", True)
        else ""
    )
    return f"""
fleethub demo is running with {vehicles} simulated vehicles.

  !! DEVELOPMENT MODE: MQTT accepts anonymous clients, HTTP requests need no token.
  !! Never expose the demo; `fleethub serve` is secure by default (see docs/security.md).

{console}  HTTP API      {http}/api/v1/vehicles
  API docs      {http}/schema/swagger
  Health        {http}/healthz
  Metrics       {http}/metrics
  MQTT broker   localhost:{hub.mqtt_port}

Try:
  curl -s '{http}/api/v1/vehicles?limit=3'
  curl -s {http}/api/v1/vehicles/{first}/twin
  curl -s -X PATCH {http}/api/v1/vehicles/{first}/twin/desired \\
       -H 'Content-Type: application/json' -d '{{"charge_limit": 85}}'
  mosquitto_sub -p {hub.mqtt_port} -t 'vehicles/{first}/#' -v
  mosquitto_sub -p {hub.mqtt_port} -t 'alerts/#' -v
  curl -s '{http}/api/v1/alerts?state=open'
  curl -s -X POST '{http}/api/v1/vehicles/{first}/commands?wait=10s' \\
       -H 'Content-Type: application/json' -d '{{"name": "locate"}}'

Press Ctrl-C to stop.
"""


async def run_demo(settings: Settings) -> int:
    stop = stop_on_signals()
    settings = with_demo_rules(development_mode(settings))
    hub = await _start_hub(settings)
    try:
        config = SimConfig(
            vehicles=settings.demo.vehicles,
            interval_s=settings.demo.interval_s,
            host="127.0.0.1",
            port=hub.mqtt_port,
            city=settings.demo.city,
            fault_rate=DEMO_FAULT_RATE,
            command_failure_rate=DEMO_COMMAND_FAILURE_RATE,
        )
        print(banner(hub, config.vehicles, config.prefix), file=sys.stderr, flush=True)
        async with Fleet(config) as fleet:
            waiter = asyncio.ensure_future(hub.wait(stop))
            while not waiter.done():
                await asyncio.wait([waiter], timeout=10)
                stats = fleet.stats()
                log.info("demo fleet", **msgspec.structs.asdict(stats))
            await waiter
    finally:
        await hub.__aexit__(None, None, None)
    return 0
