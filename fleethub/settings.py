"""All settings in one Struct: defaults, then a TOML file, then FLEETHUB_* variables, then flags."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from commands import CommandsSettings
from console import ConsoleSettings
from kernel import ConfigError
from maintenance import MaintenanceSettings, validate_maintenance
from notifications import NotificationSettings, validate_notifications
from reports import ReportSettings
from rules import Limits as RuleLimits
from rules import Zone
from security import AbuseLimits
from twin import IngestSettings, Limits

ENV_PREFIX = "FLEETHUB_"


class MqttSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "0.0.0.0"
    # 0 picks a free port (tests); `demo` also falls back to a free port when this one is taken.
    port: int = 1883
    # Development only: accept MQTT clients without a password, with no topic ACL. `fleethub demo` turns it on.
    allow_anonymous: bool = False
    # A persistent session (clean session = false) is kept this long after its client leaves (7 days).
    session_expiry_s: int = 604_800
    # QoS 1/2 messages kept per absent persistent session; beyond it the oldest are dropped and counted.
    max_queued_messages: int = 1000
    # MQTT over TLS: listens on tls_port only when both tls_certfile and tls_keyfile are set (PEM files).
    tls_port: int = 8883
    tls_certfile: str = ""
    tls_keyfile: str = ""
    # CA (PEM) that signs vehicle client certificates; needed for tls_client_cert_auth.
    tls_cafile: str = ""
    # Log a vehicle in by its client certificate: subject CN = vehicle id, signed by tls_cafile.
    tls_client_cert_auth: bool = False
    # MQTT over WebSocket (browser dashboards), authenticated like TCP clients.
    ws_enabled: bool = False
    ws_port: int = 8083
    # Connections the kernel holds for the broker before it accepts them (capped by
    # net.core.somaxconn). With asyncio's default of 100, a reconnect storm overflows the
    # queue and each dropped client waits out TCP's 1, 3, 7, 15 s SYN retransmits.
    listen_backlog: int = 4096


class HttpSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "0.0.0.0"
    port: int = 8080
    # Items per page of GET /api/v1/vehicles at most.
    max_page_size: int = 1000
    # Rows of one history query at most.
    max_history_rows: int = 10_000
    # CSV exports read this many rows from the store at a time and hand the HTTP server chunks of about
    # this many bytes; the next is made only when the client has taken the last, so a client that stops
    # reading holds one read and one chunk (plus the kernel's socket buffers), never the export.
    export_rows_per_read: int = 1000
    export_chunk_bytes: int = 65_536
    # JSON request bodies nested deeper than this are refused (400) before anything decodes them.
    max_body_depth: int = 32


class StoreSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str = "sqlite:///var/fleethub.db"
    # NORMAL survives a crash of the hub (kill -9); FULL also survives power loss, at a write cost.
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "NORMAL"
    # SQLite read connections beside the one writer every store shares; history queries read in steps
    # (aggregates, exports) take all but one, so short reads such as token checks never wait for them.
    sqlite_readers: int = 3
    # Days of history kept, removed whole days (whole partitions in PostgreSQL) at a time; 0 keeps all.
    retention_days: int = 730
    # Seconds between store maintenance runs: retention, partitions ahead, 1-minute rollup refresh.
    maintenance_interval_s: float = 30.0
    # The PostgreSQL connection pool every store shares (one per process): connections kept open, and at most.
    pg_pool_min_size: int = 2
    pg_pool_max_size: int = 10
    # "auto" uses TimescaleDB when the extension is available (and preloaded), else native partitioning.
    # Fixed when the schema is first created.
    pg_timeseries: Literal["auto", "timescaledb", "native"] = "auto"
    # Width of a TimescaleDB chunk or native partition, in hours: 1-24 dividing 24, or whole days.
    pg_chunk_interval_hours: int = 24
    # TimescaleDB: compress chunks older than this many days; 0 leaves them uncompressed.
    pg_compress_after_days: int = 7
    # Native partitioning: partitions created ahead of the current one.
    pg_premake_partitions: int = 3


class LogSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: readable on a terminal, JSON lines otherwise.
    format: Literal["auto", "console", "json"] = "auto"


class RuntimeSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The Python runtime under the hub.

    CPython's cyclic collector runs a young collection every 700 net allocations by
    default. A hub holding tens of thousands of twins allocates far more than that per
    second, and each collection walks its heap: under the bench's fleet a fifth of the
    hub's CPU went to collections, and full ones paused the event loop for up to a
    second. A higher young threshold collects the same garbage with a fraction of the
    work; the heap stays the same size because almost nothing the hub frees is cyclic.
    """

    # Net allocations between young collections; 0 keeps the interpreter's thresholds.
    gc_threshold_young: int = 50_000
    # Young collections per middle one, middle per full one (the interpreter's: 10, 10).
    gc_threshold_middle: int = 20
    gc_threshold_old: int = 10


class DemoSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    vehicles: int = 50
    interval_s: float = 2.0
    city: str = "mexico-city"


class RulesSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # false: no rules engine, no alerts, and the rules API answers 503.
    enabled: bool = True
    # TOML file of [rules.<name>] tables (and optional [zones.<name>]) loaded at start-up; "" loads none.
    file: str = ""
    # TOML file of [zones.<name>] tables loaded at start-up; "" loads none.
    zones_file: str = ""
    # Zones written inline: [rules.zones.depot-north] kind = "circle", lat = ..., lon = ..., radius_m = ...
    zones: dict[str, Zone] = msgspec.field(default_factory=dict)
    # Rules held at most, from the file and the API together.
    max_rules: int = 1000
    # Seconds between re-checks of a rule that reads the clock other than as `age(x) > 5m`.
    recheck_s: float = 10.0
    # History rows one backtest replays at most.
    backtest_max_rows: int = 100_000
    # Size limits of one rule and message template (see rules/LANGUAGE.md, "Limits").
    limits: RuleLimits = msgspec.field(default_factory=RuleLimits)


class AuthSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # false: development mode, every HTTP request acts as an admin. Only `fleethub demo` and tests turn it off.
    enabled: bool = True
    # A fixed admin bearer token for automation and first start-up; "" disables it. Prefer `fleethub users add`.
    bootstrap_token: str = ""
    # Lifetime of a new API token unless the request asks for less.
    token_ttl_days: float = 90.0
    # The longest lifetime a token may be issued with (API, CLI); longer requests are refused.
    max_token_ttl_days: float = 365.0
    # Seconds a successful argon2 check of a vehicle secret or password is remembered (0: never).
    verify_cache_s: float = 60.0
    # GET /healthz and GET /metrics without a token; false requires a token with the ops:read permission.
    public_health: bool = True
    public_metrics: bool = False


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    mqtt: MqttSettings = msgspec.field(default_factory=MqttSettings)
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    ingest: IngestSettings = msgspec.field(default_factory=IngestSettings)
    limits: Limits = msgspec.field(default_factory=Limits)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    demo: DemoSettings = msgspec.field(default_factory=DemoSettings)
    rules: RulesSettings = msgspec.field(default_factory=RulesSettings)
    commands: CommandsSettings = msgspec.field(default_factory=CommandsSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    abuse: AbuseLimits = msgspec.field(default_factory=AbuseLimits)
    runtime: RuntimeSettings = msgspec.field(default_factory=RuntimeSettings)
    console: ConsoleSettings = msgspec.field(default_factory=ConsoleSettings)
    maintenance: MaintenanceSettings = msgspec.field(default_factory=MaintenanceSettings)
    notifications: NotificationSettings = msgspec.field(default_factory=NotificationSettings)
    reports: ReportSettings = msgspec.field(default_factory=ReportSettings)


_SECTIONS = set(Settings.__struct_fields__)
_ENV_ALIASES = {"DATABASE": ("store", "url")}


def load_settings(
    config_file: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build settings from every source and validate them; raises ConfigError naming the setting.

    `overrides` maps dotted names ("mqtt.port") to values from CLI flags.
    """
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if config_file is not None:
        _merge(raw, _read_toml(Path(config_file)))
    _merge(raw, _from_env(env))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            section, key = dotted.split(".", 1)
            raw.setdefault(section, {})[key] = value
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
    validate(settings)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name.removeprefix(ENV_PREFIX)
        if rest in _ENV_ALIASES:
            section, key = _ENV_ALIASES[rest]
        else:
            section, _, key = rest.lower().partition("_")
            if section not in _SECTIONS or not key:
                continue
        out.setdefault(section, {})[key] = _coerce_env(value)
    return out


def _coerce_env(value: str) -> Any:
    # Environment values are strings; booleans need help, numbers are converted by msgspec.
    lowered = value.strip().lower()
    if lowered in {"true", "yes", "on"}:
        return True
    if lowered in {"false", "no", "off"}:
        return False
    return value


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def _explain(exc: msgspec.ValidationError) -> str:
    message = str(exc)
    match = re.search(r" - at `\$\.([^`]+)`", message)
    if match:
        where = match.group(1).replace("[", ".").replace("]", "").replace("'", "").replace('"', "")
        what = message[: match.start()]
        if what.startswith("Object contains unknown field"):
            return f"unknown setting '{where}' ({what})"
        return f"setting '{where}': {what}"
    if message.startswith("Object contains unknown field"):
        return f"unknown settings section: {message}"
    return f"invalid settings: {message}"


def _check(ok: bool, name: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"setting '{name}' must be {rule}, got {value!r}")


def validate(settings: Settings) -> None:
    """Cross-field and range checks msgspec types cannot express."""
    for name, port in (("mqtt.port", settings.mqtt.port), ("http.port", settings.http.port)):
        _check(0 <= port <= 65535, name, "0-65535 (0 picks a free port)", port)
    mqtt = settings.mqtt
    _check(mqtt.session_expiry_s >= 1, "mqtt.session_expiry_s", "at least 1 (seconds)", mqtt.session_expiry_s)
    _check(mqtt.max_queued_messages >= 1, "mqtt.max_queued_messages", "at least 1", mqtt.max_queued_messages)
    _check(mqtt.listen_backlog >= 1, "mqtt.listen_backlog", "at least 1", mqtt.listen_backlog)
    url = settings.store.url
    _check(
        url.startswith(("sqlite://", "postgresql://", "postgres://")),
        "store.url",
        "a sqlite:///path.db or postgresql://... URL",
        url,
    )
    store = settings.store
    _check(store.retention_days >= 0, "store.retention_days", "0 (keep all) or more", store.retention_days)
    interval = store.maintenance_interval_s
    _check(interval > 0, "store.maintenance_interval_s", "positive", interval)
    _check(store.sqlite_readers >= 1, "store.sqlite_readers", "at least 1", store.sqlite_readers)
    _check(store.pg_pool_min_size >= 1, "store.pg_pool_min_size", "at least 1", store.pg_pool_min_size)
    _check(
        store.pg_pool_max_size >= store.pg_pool_min_size,
        "store.pg_pool_max_size",
        f"at least store.pg_pool_min_size ({store.pg_pool_min_size})",
        store.pg_pool_max_size,
    )
    hours = store.pg_chunk_interval_hours
    _check(
        hours >= 1 and (24 % hours == 0 or hours % 24 == 0),
        "store.pg_chunk_interval_hours",
        "1-24 dividing 24 (1, 2, 3, 4, 6, 8, 12, 24) or a multiple of 24",
        hours,
    )
    _check(
        store.pg_compress_after_days >= 0,
        "store.pg_compress_after_days",
        "0 (off) or more",
        store.pg_compress_after_days,
    )
    _check(store.pg_premake_partitions >= 0, "store.pg_premake_partitions", "0 or more", store.pg_premake_partitions)
    ingest = settings.ingest
    _check(ingest.queue_max >= 1, "ingest.queue_max", "at least 1", ingest.queue_max)
    _check(ingest.batch_max >= 1, "ingest.batch_max", "at least 1", ingest.batch_max)
    _check(ingest.max_clock_ahead_s >= 0, "ingest.max_clock_ahead_s", "0 or more", ingest.max_clock_ahead_s)
    _check(ingest.commit_retry_max_s > 0, "ingest.commit_retry_max_s", "positive", ingest.commit_retry_max_s)
    for field in Limits.__struct_fields__:
        value = getattr(settings.limits, field)
        _check(value >= 1, f"limits.{field}", "at least 1", value)
    _check(settings.http.max_page_size >= 1, "http.max_page_size", "at least 1", settings.http.max_page_size)
    _check(settings.http.max_history_rows >= 1, "http.max_history_rows", "at least 1", settings.http.max_history_rows)
    http = settings.http
    _check(http.export_rows_per_read >= 1, "http.export_rows_per_read", "at least 1", http.export_rows_per_read)
    _check(http.export_chunk_bytes >= 1024, "http.export_chunk_bytes", "at least 1024", http.export_chunk_bytes)
    _check(1 <= http.max_body_depth <= 256, "http.max_body_depth", "1-256", http.max_body_depth)
    _check(settings.demo.vehicles >= 0, "demo.vehicles", "0 or more", settings.demo.vehicles)
    _check(settings.demo.interval_s > 0, "demo.interval_s", "positive", settings.demo.interval_s)
    runtime = settings.runtime
    young = runtime.gc_threshold_young
    _check(young >= 0, "runtime.gc_threshold_young", "0 (the interpreter's thresholds) or more", young)
    for name in ("gc_threshold_middle", "gc_threshold_old"):
        _check(getattr(runtime, name) >= 1, f"runtime.{name}", "at least 1", getattr(runtime, name))
    _validate_security(settings)
    rules = settings.rules
    _check(rules.max_rules >= 1, "rules.max_rules", "at least 1", rules.max_rules)
    _check(rules.recheck_s > 0, "rules.recheck_s", "positive", rules.recheck_s)
    _check(rules.backtest_max_rows >= 1, "rules.backtest_max_rows", "at least 1", rules.backtest_max_rows)
    _validate_commands(settings.commands)
    for name, must, value in [
        *validate_maintenance(settings.maintenance),
        *validate_notifications(settings.notifications),
    ]:
        _check(False, name, must, value)


def _validate_commands(commands: CommandsSettings) -> None:
    for name in ("default_ttl_s", "max_ttl_s", "resend_interval_s", "max_wait_s", "max_job_rate"):
        value = getattr(commands, name)
        _check(value > 0, f"commands.{name}", "positive", value)
    for name in ("max_args_bytes", "max_open_per_vehicle", "max_job_vehicles", "queue_max"):
        value = getattr(commands, name)
        _check(value >= 1, f"commands.{name}", "at least 1", value)
    _check(
        commands.default_ttl_s <= commands.max_ttl_s,
        "commands.default_ttl_s",
        f"at most commands.max_ttl_s ({commands.max_ttl_s:g})",
        commands.default_ttl_s,
    )


def _validate_security(settings: Settings) -> None:
    mqtt = settings.mqtt
    for name, port in (("mqtt.tls_port", mqtt.tls_port), ("mqtt.ws_port", mqtt.ws_port)):
        _check(0 <= port <= 65535, name, "0-65535 (0 picks a free port)", port)
    _check(
        bool(mqtt.tls_certfile) == bool(mqtt.tls_keyfile),
        "mqtt.tls_keyfile",
        "set together with mqtt.tls_certfile (both or neither)",
        mqtt.tls_keyfile,
    )
    _check(
        not mqtt.tls_client_cert_auth or (bool(mqtt.tls_certfile) and bool(mqtt.tls_cafile)),
        "mqtt.tls_client_cert_auth",
        "used with mqtt.tls_certfile, mqtt.tls_keyfile and mqtt.tls_cafile (the CA signing vehicle certificates)",
        mqtt.tls_client_cert_auth,
    )
    auth = settings.auth
    _check(auth.token_ttl_days > 0, "auth.token_ttl_days", "positive", auth.token_ttl_days)
    _check(
        auth.token_ttl_days <= auth.max_token_ttl_days,
        "auth.token_ttl_days",
        "at most auth.max_token_ttl_days",
        auth.token_ttl_days,
    )
    _check(auth.verify_cache_s >= 0, "auth.verify_cache_s", "0 (off) or more", auth.verify_cache_s)
    _check(
        not auth.bootstrap_token or len(auth.bootstrap_token) >= 32,
        "auth.bootstrap_token",
        "empty or at least 32 characters (e.g. `openssl rand -hex 32`)",
        "<hidden>",
    )
    abuse = settings.abuse
    for name in ("message_rate_per_s", "connect_rate_per_ip_per_s", "connect_rate_per_client_per_s"):
        value = getattr(abuse, name)
        _check(value >= 0, f"abuse.{name}", "0 (off) or more", value)
    for name in ("message_burst", "connect_burst_per_ip", "connect_burst_per_client", "max_subscriptions_per_client"):
        value = getattr(abuse, name)
        _check(value >= 1, f"abuse.{name}", "at least 1", value)
    _check(
        abuse.login_failures_before_backoff >= 0,
        "abuse.login_failures_before_backoff",
        "0 or more",
        abuse.login_failures_before_backoff,
    )
    _check(abuse.login_backoff_base_s >= 0, "abuse.login_backoff_base_s", "0 or more", abuse.login_backoff_base_s)
    _check(
        abuse.login_backoff_max_s >= abuse.login_backoff_base_s,
        "abuse.login_backoff_max_s",
        "at least abuse.login_backoff_base_s",
        abuse.login_backoff_max_s,
    )
