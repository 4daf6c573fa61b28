"""What the API needs from the rest of the hub, handed over by the composition root."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import msgspec
from litestar.di import NamedDependency
from prometheus_client import CollectorRegistry

from commands import CommandService
from console import Console
from maintenance import MaintenanceService
from notifications import NotificationService
from reports import ReportService
from rules import RulesEngine
from security import Principal, SecurityService
from twin import HistoryReader, TwinService


class ComponentHealth(msgspec.Struct):
    status: str
    detail: dict[str, object] = msgspec.field(default_factory=dict)


class Health(msgspec.Struct):
    status: str
    components: dict[str, ComponentHealth]


class BrokerGrant(Protocol):
    @property
    def action(self) -> str: ...
    @property
    def topic_filter(self) -> str: ...


class BrokerGrants(Protocol):
    @property
    def grants(self) -> Sequence[BrokerGrant]: ...
    # True when the grants are all the principal may do.
    @property
    def complete(self) -> bool: ...


class BrokerAccess(Protocol):
    """Logins and topic decisions for an external broker (`broker.ExternalAuth`); `api.broker_auth` speaks HTTP."""

    async def login(self, username: str, password: str, client_id: str, peer: str) -> Principal | None: ...
    async def principal(self, username: str) -> Principal | None: ...
    async def may(self, principal: Principal, action: Literal["publish", "subscribe"], topic: str) -> bool: ...
    async def grants(self, principal: Principal) -> BrokerGrants: ...
    async def expires_at(self, principal: Principal) -> float | None: ...


@dataclass(frozen=True, slots=True)
class BrokerAuthConfig:
    access: BrokerAccess
    # What the broker must send: the HTTP basic auth password, or a bearer token.
    secret: str
    rabbitmq_vhost: str = "/"
    rabbitmq_exchange: str = "amq.topic"


@dataclass(frozen=True, slots=True)
class ApiDeps:
    service: TwinService
    # History, aggregates and presence: read from the twin store, not through the ingest consumer.
    history: HistoryReader
    registry: CollectorRegistry
    health: Callable[[], Awaitable[Health]]
    max_page_size: int = 1000
    max_history_rows: int = 10_000
    max_body_bytes: int = 65_536
    # JSON request bodies nested deeper than this are refused before they are decoded (api.body_depth).
    max_body_depth: int = 32
    # CSV exports: rows per store read, and the size of the chunks handed to the HTTP server (api.export).
    export_rows_per_read: int = 1000
    export_chunk_bytes: int = 65_536
    # None when the rules engine is off; the rules, zones and alerts API then answers 503.
    rules: RulesEngine | None = None
    # Remote commands and fleet jobs (api/commands.py).
    commands: CommandService | None = None
    # Credentials, users, tokens and the audit log. Without it, authenticated routes answer 401.
    security: SecurityService | None = None
    # false: development mode, every request acts as an admin of every fleet (see api.auth).
    auth_enabled: bool = True
    # /healthz and /metrics without a token.
    public_health: bool = True
    public_metrics: bool = False
    # The operator console (pages, fleet index, live feed, login sessions); None when console.enabled is false.
    console: Console | None = None
    # Maintenance schedules, service records and meters (api/maintenance.py); None when maintenance is off.
    maintenance: MaintenanceService | None = None
    # Channels, subscriptions, deliveries (api/notifications.py); None when notifications are off.
    notifications: NotificationService | None = None
    # Daily summaries, stops, zone visits and report schedules (api/reports.py); None when reports are off.
    reports: ReportService | None = None
    # The /broker-auth endpoints for EMQX and RabbitMQ (api.broker_auth); None when auth.broker_secret is empty.
    broker_auth: BrokerAuthConfig | None = None


# How handlers ask for the dependencies: `deps: Deps`.
Deps = NamedDependency[ApiDeps]
