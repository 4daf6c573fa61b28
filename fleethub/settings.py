"""All settings in one Struct: defaults, then a TOML file, then FLEETHUB_* variables, then flags.

Each field declares its range with `msgspec.Meta` (checked while the settings decode) and
documents itself with `description=`; `validate` holds only the checks between fields.
A `Meta(extra={"must_be": ...})` words a constraint the numbers cannot (a pattern).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from cluster import ClusterSettings
from commands import CommandsSettings
from console import ConsoleSettings
from kernel import ConfigError
from maintenance import MaintenanceSettings
from notifications import NotificationSettings
from reports import ReportSettings
from rules import Limits as RuleLimits
from rules import Zone
from security import AbuseLimits
from twin import IngestSettings, Limits

ENV_PREFIX = "FLEETHUB_"

Port = Annotated[int, Meta(ge=0, le=65535, extra={"must_be": "0-65535 (0 picks a free port)"})]


class MqttSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: Annotated[str, Meta(description="Address the MQTT listeners bind to.")] = "0.0.0.0"
    port: Annotated[
        Port,
        Meta(
            description="MQTT over TCP. 0 picks a free port (tests); `demo` also falls back to a free port when taken."
        ),
    ] = 1883
    allow_anonymous: Annotated[
        bool,
        Meta(
            description="Development only: accept MQTT clients without a password, with no topic ACL. "
            "`fleethub demo` turns it on."
        ),
    ] = False
    session_expiry_s: Annotated[
        int,
        Meta(
            ge=1, description="A persistent session (clean session = false) is kept this long after its client leaves."
        ),
    ] = 604_800
    max_queued_messages: Annotated[
        int,
        Meta(
            ge=1,
            description="QoS 1/2 messages kept per absent persistent session; beyond it the oldest are dropped "
            "and counted.",
        ),
    ] = 1000
    tls_port: Annotated[
        Port, Meta(description="MQTT over TLS: listens only when both tls_certfile and tls_keyfile are set.")
    ] = 8883
    tls_certfile: Annotated[str, Meta(description="Server certificate (PEM) for MQTT over TLS.")] = ""
    tls_keyfile: Annotated[str, Meta(description="Private key (PEM) of tls_certfile.")] = ""
    tls_cafile: Annotated[
        str, Meta(description="CA (PEM) that signs vehicle client certificates; needed for tls_client_cert_auth.")
    ] = ""
    tls_client_cert_auth: Annotated[
        bool,
        Meta(description="Log a vehicle in by its client certificate: subject CN = vehicle id, signed by tls_cafile."),
    ] = False
    ws_enabled: Annotated[
        bool, Meta(description="MQTT over WebSocket (browser dashboards), authenticated like TCP clients.")
    ] = False
    ws_port: Annotated[Port, Meta(description="MQTT over WebSocket, when ws_enabled.")] = 8083
    # With asyncio's default of 100, a reconnect storm overflows the queue and each dropped
    # client waits out TCP's 1, 3, 7, 15 s SYN retransmits.
    listen_backlog: Annotated[
        int,
        Meta(
            ge=1,
            description="Connections the kernel holds for the broker before it accepts them "
            "(capped by net.core.somaxconn).",
        ),
    ] = 4096
    persistence: Annotated[
        bool,
        Meta(
            description="Keep retained messages and persistent sessions in the hub's database (store.url) and "
            "restore them at start (docs/broker-persistence.md)."
        ),
    ] = True
    store_max_pending: Annotated[
        int, Meta(ge=1, description="Broker state changes waiting for a commit; beyond it acknowledgements wait.")
    ] = 100_000
    store_batch_max: Annotated[int, Meta(ge=1, description="Changes per broker store transaction, at most.")] = 10_000
    store_sweep_interval_s: Annotated[
        float,
        Meta(gt=0, description="How often expired sessions and expired queued/retained messages are removed."),
    ] = 5.0
    max_packet_bytes: Annotated[
        int,
        Meta(
            ge=1,
            description="The largest MQTT packet read (announced to MQTT 5 clients); a bigger one closes the "
            "connection. PUBLISHes between limits.max_payload_bytes and this are read, thrown away and refused "
            "with a notice.",
        ),
    ] = 1_048_576
    max_queued_bytes: Annotated[
        int,
        Meta(
            ge=1, description="Bytes of messages queued per session, connected or absent, beside max_queued_messages."
        ),
    ] = 1_048_576
    slow_subscriber: Annotated[
        Literal["drop_oldest", "disconnect"],
        Meta(description="A connected client whose queue is full: its oldest messages are dropped, or it is "
             "disconnected; either is counted."),
    ] = "drop_oldest"  # fmt: skip
    connect_timeout_s: Annotated[float, Meta(gt=0, description="Seconds a new connection has to send CONNECT.")] = 10.0
    max_connections_per_address: Annotated[
        int,
        Meta(ge=1, description="Connections open at once from one IP address (a carrier NAT puts many vehicles "
             "behind one)."),
    ] = 1000  # fmt: skip
    fd_headroom: Annotated[
        int,
        Meta(ge=0, description="File descriptors kept free for the HTTP API, the database and existing sessions: "
             "new MQTT connections are closed at once this close to the open-files limit."),
    ] = 64  # fmt: skip
    max_inflight_messages: Annotated[
        int,
        Meta(ge=1, description="QoS 1/2 messages in flight to one client (an MQTT 5 client's receive maximum wins)."),
    ] = 100
    receive_maximum: Annotated[
        int, Meta(ge=1, le=65535, description="MQTT 5: unacknowledged QoS 1/2 messages a client may send at once.")
    ] = 100
    topic_alias_maximum: Annotated[
        int, Meta(ge=0, le=65535, description="MQTT 5: topic aliases a client may set per connection.")
    ] = 64
    sys_interval_s: Annotated[
        float,
        Meta(ge=0, description="Seconds between $SYS/broker/... statistics (for global admins); 0 turns them off."),
    ] = 10.0
    max_keep_alive_s: Annotated[
        int,
        Meta(
            ge=0,
            le=65535,
            description="MQTT 5: the longest keep-alive a client may use, announced as Server Keep Alive when it "
            "asks for longer or none; 0 accepts the client's.",
        ),
    ] = 0
    max_sessions: Annotated[
        int,
        Meta(ge=1, description="MQTT sessions held at most, connected clients' and absent persistent ones; a "
             "CONNECT with a new client id beyond it is refused (3.1.1: 3, MQTT 5: 0x97)."),
    ] = 200_000  # fmt: skip
    max_retained_messages: Annotated[
        int, Meta(ge=1, description="Retained messages kept at most; a retained PUBLISH on a new topic beyond it is "
                  "delivered but not kept (counted).")
    ] = 100_000  # fmt: skip
    max_retained_bytes: Annotated[
        int, Meta(ge=1, description="Bytes (topic and payload) of the retained messages kept at most, likewise.")
    ] = 268_435_456
    server_reference: Annotated[
        str, Meta(description="MQTT 5: the server named in the DISCONNECT clients get at shutdown (empty: none).")
    ] = ""


class HttpSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: Annotated[str, Meta(description="Address the HTTP API binds to.")] = "0.0.0.0"
    port: Annotated[Port, Meta(description="HTTP API. 0 picks a free port.")] = 8080
    max_page_size: Annotated[int, Meta(ge=1, description="Items per page of GET /api/v1/vehicles at most.")] = 1000
    max_history_rows: Annotated[int, Meta(ge=1, description="Rows of one history query at most.")] = 10_000
    # The next read and chunk are made only when the client has taken the last, so a client that
    # stops reading holds one read and one chunk (plus the kernel's socket buffers), never the export.
    export_rows_per_read: Annotated[
        int, Meta(ge=1, description="CSV exports read this many rows from the store at a time.")
    ] = 1000
    export_chunk_bytes: Annotated[
        int, Meta(ge=1024, description="CSV exports hand the HTTP server chunks of about this many bytes.")
    ] = 65_536
    max_body_depth: Annotated[
        int,
        Meta(
            ge=1, le=256, description="JSON request bodies nested deeper than this are refused (400) before decoding."
        ),
    ] = 32


class StoreSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: Annotated[
        str,
        Meta(
            pattern="^(sqlite|postgresql|postgres)://",
            description="The database: sqlite:///path.db or postgresql://user@host/db.",
            extra={"must_be": "a sqlite:///path.db or postgresql://... URL"},
        ),
    ] = "sqlite:///var/fleethub.db"
    sqlite_synchronous: Annotated[
        Literal["OFF", "NORMAL", "FULL", "EXTRA"],
        Meta(
            description="NORMAL survives a crash of the hub (kill -9); FULL also survives power loss, at a write cost."
        ),
    ] = "NORMAL"
    # History queries read in steps (aggregates, exports) take all but one reader, so short reads
    # such as token checks never wait for them.
    sqlite_readers: Annotated[
        int, Meta(ge=1, description="SQLite read connections beside the one writer every store shares.")
    ] = 3
    retention_days: Annotated[
        int,
        Meta(
            ge=0,
            description="Days of history kept, removed whole days (whole partitions in PostgreSQL) at a time; "
            "0 keeps all.",
        ),
    ] = 730
    maintenance_interval_s: Annotated[
        float,
        Meta(gt=0, description="Seconds between store maintenance runs: retention, partitions ahead, 1-minute rollup."),
    ] = 30.0
    pg_pool_min_size: Annotated[
        int, Meta(ge=1, description="Connections the process's one PostgreSQL pool keeps open.")
    ] = 2
    pg_pool_max_size: Annotated[
        int, Meta(ge=1, description="Connections the PostgreSQL pool opens at most; at least pg_pool_min_size.")
    ] = 10
    pg_pool_timeout_s: Annotated[
        float,
        Meta(
            gt=0, description="Seconds a store call waits for a pooled connection before it fails (ingest retries it)."
        ),
    ] = 10.0
    pg_reconnect_max_s: Annotated[
        float,
        Meta(
            gt=0,
            description="While PostgreSQL is unreachable it is probed at least this often; once it answers, the "
            "connection pool is renewed.",
        ),
    ] = 2.0
    pg_timeseries: Annotated[
        Literal["auto", "timescaledb", "native"],
        Meta(
            description='"auto" uses TimescaleDB when the extension is available (and preloaded), else native '
            "partitioning. Fixed when the schema is first created."
        ),
    ] = "auto"
    pg_chunk_interval_hours: Annotated[
        int,
        Meta(
            ge=1,
            description="Width of a TimescaleDB chunk or native partition, in hours: 1-24 dividing 24, or whole days.",
        ),
    ] = 24
    pg_compress_after_days: Annotated[
        int,
        Meta(ge=0, description="TimescaleDB: compress chunks older than this many days; 0 leaves them uncompressed."),
    ] = 7
    pg_premake_partitions: Annotated[
        int, Meta(ge=0, description="Native partitioning: partitions created ahead of the current one.")
    ] = 3


class LogSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    level: Annotated[Literal["debug", "info", "warning", "error"], Meta(description="Lowest level logged.")] = "info"
    format: Annotated[
        Literal["auto", "console", "json"], Meta(description="auto: readable on a terminal, JSON lines otherwise.")
    ] = "auto"


class RuntimeSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The Python runtime under the hub.

    CPython's cyclic collector runs a young collection every 700 net allocations by
    default. A hub holding tens of thousands of twins allocates far more than that per
    second, and each collection walks its heap: under the bench's fleet a fifth of the
    hub's CPU went to collections, and full ones paused the event loop for up to a
    second. A higher young threshold collects the same garbage with a fraction of the
    work; the heap stays the same size because almost nothing the hub frees is cyclic.
    """

    gc_threshold_young: Annotated[
        int,
        Meta(
            ge=0,
            description="Net allocations between young collections; 0 keeps the interpreter's thresholds.",
            extra={"must_be": "0 (the interpreter's thresholds) or more"},
        ),
    ] = 50_000
    gc_threshold_middle: Annotated[
        int, Meta(ge=1, description="Young collections per middle one (the interpreter's: 10).")
    ] = 20
    gc_threshold_old: Annotated[
        int, Meta(ge=1, description="Middle collections per full one (the interpreter's: 10).")
    ] = 10


class DemoSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    vehicles: Annotated[int, Meta(ge=0, description="Simulated vehicles `fleethub demo` runs.")] = 50
    interval_s: Annotated[float, Meta(gt=0, description="Seconds between a simulated vehicle's reports.")] = 2.0
    city: Annotated[str, Meta(description="Where the simulated vehicles drive.")] = "mexico-city"


class RulesSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: Annotated[bool, Meta(description="false: no rules engine, no alerts, and the rules API answers 503.")] = (
        True
    )
    file: Annotated[
        str,
        Meta(
            description="TOML file of [rules.<name>] tables (and optional [zones.<name>]) loaded at start-up; "
            '"" loads none.'
        ),
    ] = ""
    zones_file: Annotated[
        str, Meta(description='TOML file of [zones.<name>] tables loaded at start-up; "" loads none.')
    ] = ""
    zones: Annotated[
        dict[str, Zone],
        Meta(
            description='Zones written inline: [rules.zones.depot-north] kind = "circle", lat = ..., lon = ..., '
            "radius_m = ..."
        ),
    ] = msgspec.field(default_factory=dict)
    max_rules: Annotated[int, Meta(ge=1, description="Rules held at most, from the file and the API together.")] = 1000
    recheck_s: Annotated[
        float,
        Meta(gt=0, description="Seconds between re-checks of a rule that reads the clock other than as `age(x) > 5m`."),
    ] = 10.0
    backtest_max_rows: Annotated[int, Meta(ge=1, description="History rows one backtest replays at most.")] = 100_000
    limits: Annotated[
        RuleLimits,
        Meta(description='Size limits of one rule and message template (see docs/rules-language.md, "Limits").'),
    ] = msgspec.field(default_factory=RuleLimits)


class AuthSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: Annotated[
        bool,
        Meta(
            description="false: development mode, every HTTP request acts as an admin. "
            "Only `fleethub demo` and tests turn it off."
        ),
    ] = True
    bootstrap_token: Annotated[
        str,
        Meta(
            description='A fixed admin bearer token for automation and first start-up; "" disables it, else at '
            "least 32 characters. Prefer `fleethub users add`."
        ),
    ] = ""
    token_ttl_days: Annotated[
        float, Meta(gt=0, description="Lifetime of a new API token unless the request asks for less.")
    ] = 90.0
    max_token_ttl_days: Annotated[
        float,
        Meta(
            gt=0, description="The longest lifetime a token may be issued with (API, CLI); longer requests are refused."
        ),
    ] = 365.0
    verify_cache_s: Annotated[
        float,
        Meta(
            ge=0,
            description="Seconds a successful argon2 check of a vehicle secret or password is remembered (0: never).",
        ),
    ] = 60.0
    public_health: Annotated[
        bool, Meta(description="GET /healthz without a token; false requires a token with the ops:read permission.")
    ] = True
    public_metrics: Annotated[
        bool, Meta(description="GET /metrics without a token; false requires a token with the ops:read permission.")
    ] = False
    broker_secret: Annotated[
        str,
        Meta(
            description="The shared secret an external broker (EMQX, RabbitMQ) sends to the /broker-auth endpoints, "
            'as the HTTP basic auth password or a bearer token; "" turns them off, else at least 32 characters. '
            "See docs/external-brokers.md."
        ),
    ] = ""
    broker_max_pending_logins: Annotated[
        int,
        Meta(
            ge=1,
            description="External-broker logins waiting for their secret check at once; more are refused "
            "(outcome busy) and the client retries.",
        ),
    ] = 256
    rabbitmq_vhost: Annotated[str, Meta(description="The RabbitMQ virtual host MQTT clients may use.")] = "/"
    rabbitmq_exchange: Annotated[
        str, Meta(description="The topic exchange RabbitMQ's MQTT plugin publishes to (its mqtt.exchange).")
    ] = "amq.topic"


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
    cluster: ClusterSettings = msgspec.field(default_factory=ClusterSettings)


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
        raise ConfigError(_explain(exc, raw)) from None
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


def _explain(exc: msgspec.ValidationError, raw: Mapping[str, Any]) -> str:
    message = str(exc)
    match = re.search(r" - at `\$\.([^`]+)`", message)
    if match:
        where = match.group(1).replace("[", ".").replace("]", "").replace("'", "").replace('"', "")
        what = message[: match.start()]
        if what.startswith("Object contains unknown field"):
            return f"unknown setting '{where}' ({what})"
        return _out_of_range(where, raw) or f"setting '{where}': {what}"
    if message.startswith("Object contains unknown field"):
        return f"unknown settings section: {message}"
    return f"invalid settings: {message}"


_SCALARS: dict[type[msgspec.inspect.Type], type] = {
    msgspec.inspect.IntType: int,
    msgspec.inspect.FloatType: float,
    msgspec.inspect.StrType: str,
}


def _out_of_range(where: str, raw: Mapping[str, Any]) -> str | None:
    """The message for a value of the right type that breaks the constraint declared on its field."""
    declared = _declared(where)
    if declared is None:
        return None
    kind, extra = declared
    value: Any = raw
    for part in where.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    try:
        value = msgspec.convert(value, _SCALARS[type(kind)], strict=False)
    except msgspec.ValidationError:
        return None
    rule = extra.get("must_be") or _wording(kind)
    return f"setting '{where}' must be {rule}, got {value!r}"


def _declared(where: str) -> tuple[msgspec.inspect.Type, Mapping[str, Any]] | None:
    """The scalar type info (with its constraints) of a dotted setting name, and its `Meta.extra`."""
    kind: msgspec.inspect.Type = msgspec.inspect.type_info(Settings)
    extra: Mapping[str, Any] = {}
    for part in where.split("."):
        if isinstance(kind, msgspec.inspect.Metadata):
            kind = kind.type
        if isinstance(kind, msgspec.inspect.StructType):
            fields = {f.encode_name: f.type for f in kind.fields}
            if part not in fields:
                return None
            kind = fields[part]
        elif isinstance(kind, msgspec.inspect.DictType):
            kind = kind.value_type
        else:
            return None
    if isinstance(kind, msgspec.inspect.Metadata):
        extra = kind.extra or {}
        kind = kind.type
    return (kind, extra) if type(kind) in _SCALARS else None


def _wording(kind: msgspec.inspect.Type) -> str:
    if not isinstance(kind, msgspec.inspect.IntType | msgspec.inspect.FloatType):
        return _str_wording(kind) if isinstance(kind, msgspec.inspect.StrType) else "valid"
    if kind.ge is not None and kind.le is not None:
        return f"{kind.ge}-{kind.le}"
    parts = []
    if kind.ge is not None:
        parts.append("0 or more" if kind.ge == 0 else f"at least {kind.ge}")
    if kind.gt is not None:
        parts.append("positive" if kind.gt == 0 else f"more than {kind.gt}")
    if kind.le is not None:
        parts.append(f"at most {kind.le}")
    if kind.lt is not None:
        parts.append(f"less than {kind.lt}")
    return " and ".join(parts)


def _str_wording(kind: msgspec.inspect.StrType) -> str:
    parts = []
    if kind.min_length is not None:
        parts.append("not empty" if kind.min_length == 1 else f"at least {kind.min_length} characters")
    if kind.max_length is not None:
        parts.append(f"at most {kind.max_length} characters")
    if kind.pattern is not None:
        parts.append(f"matching {kind.pattern!r}")
    return " and ".join(parts)


def _check(ok: bool, name: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"setting '{name}' must be {rule}, got {value!r}")


def validate(settings: Settings) -> None:
    """The checks between fields; each field's own range is declared on it and checked while decoding."""
    store = settings.store
    _check(
        store.pg_pool_max_size >= store.pg_pool_min_size,
        "store.pg_pool_max_size",
        f"at least store.pg_pool_min_size ({store.pg_pool_min_size})",
        store.pg_pool_max_size,
    )
    hours = store.pg_chunk_interval_hours
    _check(
        24 % hours == 0 or hours % 24 == 0,
        "store.pg_chunk_interval_hours",
        "1-24 dividing 24 (1, 2, 3, 4, 6, 8, 12, 24) or a multiple of 24",
        hours,
    )
    mqtt = settings.mqtt
    payload = settings.limits.max_payload_bytes
    _check(
        mqtt.max_packet_bytes >= payload,
        "mqtt.max_packet_bytes",
        f"at least limits.max_payload_bytes ({payload})",
        mqtt.max_packet_bytes,
    )
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
    _check(
        auth.token_ttl_days <= auth.max_token_ttl_days,
        "auth.token_ttl_days",
        "at most auth.max_token_ttl_days",
        auth.token_ttl_days,
    )
    # Not a declared pattern: the message must not echo the secret.
    _check(
        not auth.bootstrap_token or len(auth.bootstrap_token) >= 32,
        "auth.bootstrap_token",
        "empty or at least 32 characters (e.g. `openssl rand -hex 32`)",
        "<hidden>",
    )
    _check(
        not auth.broker_secret or len(auth.broker_secret) >= 32,
        "auth.broker_secret",
        "empty or at least 32 characters (e.g. `openssl rand -hex 32`)",
        "<hidden>",
    )
    abuse = settings.abuse
    _check(
        abuse.login_backoff_max_s >= abuse.login_backoff_base_s,
        "abuse.login_backoff_max_s",
        "at least abuse.login_backoff_base_s",
        abuse.login_backoff_max_s,
    )
    cluster = settings.cluster
    _check(
        not cluster.enabled or store.url.startswith(("postgresql://", "postgres://")),
        "store.url",
        "a postgresql:// URL when hubs share it (cluster.broker set or cluster.role = 'api')",
        store.url if store.url.startswith("sqlite") else "<postgresql URL>",
    )
    _check(
        cluster.heartbeat_s * 2 < cluster.lease_s,
        "cluster.heartbeat_s",
        f"under half of cluster.lease_s ({cluster.lease_s:g}), so a lease is renewed twice before it runs out",
        cluster.heartbeat_s,
    )
    commands = settings.commands
    _check(
        commands.default_ttl_s <= commands.max_ttl_s,
        "commands.default_ttl_s",
        f"at most commands.max_ttl_s ({commands.max_ttl_s:g})",
        commands.default_ttl_s,
    )
