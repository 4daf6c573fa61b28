"""The composition root: every part of the hub, started and stopped in order.

Start: database (migrated) -> stores -> twin consumer -> broker -> rules engine -> HTTP.
Stop in reverse, except the rules engine: stop accepting HTTP, stop the broker (no new
messages), drain and commit the ingest queue, stop the rules engine (it evaluates the
drained updates; their alerts are stored, though no longer published), close the
stores, then the database. Nothing is fire-and-forget: every task is held and awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Self

import structlog
from prometheus_client import CollectorRegistry

from api import ApiDeps, BrokerAuthConfig, ComponentHealth, Health, create_app
from broker import (
    BrokerMetrics,
    BrokerStoreMetrics,
    EmbeddedBroker,
    ExternalAuth,
    QueueLimits,
    TlsListener,
    WriterSettings,
    broker_store,
)
from cluster import ClusterWorker, Duties, ForwardedWrites, ListenMetrics, LiveRelay, WorkerMetrics
from commands import CommandService
from console import Console
from fleethub.cluster_live_setup import relay_live
from fleethub.commands_setup import command_service
from fleethub.console_setup import console_of
from fleethub.http_server import HttpServer
from fleethub.maintenance_setup import maintenance_service
from fleethub.rules_setup import rules_engine, start_rules
from fleethub.settings import Settings
from fleethub.stores import database, history_options
from kernel import ConfigError, Database, PostgresDatabase, cancel_and_wait
from maintenance import MaintenanceService, MeterDeriver
from notifications import NotificationMetrics, NotificationService, notification_store
from reports import ReportService, report_store
from rules import RulesEngine
from security import SecurityService, SecurityStore, security_store
from twin import IngestMetrics, Store, TwinService, dead_letter_store, run_maintenance, twin_store

log = structlog.get_logger(__name__)


class Hub:
    def __init__(self, settings: Settings, *, wrap_store: Callable[[Store], Store] | None = None) -> None:
        """`wrap_store` wraps the twin store the hub builds (tests slow its commits with it)."""
        self.settings = settings
        self.registry = CollectorRegistry()
        # The one Database of the process: every store below takes its connections from it.
        self.database: Database = database(settings.store)
        store = twin_store(self.database, history_options(settings.store))
        self.store: Store = wrap_store(store) if wrap_store is not None else store
        self.service = TwinService(
            self.store,
            limits=settings.limits,
            settings=settings.ingest,
            metrics=IngestMetrics(self.registry),
            dead_letters=dead_letter_store(self.database),
        )
        self._stack = contextlib.AsyncExitStack()
        self._consumer: asyncio.Task[None] | None = None
        self.broker: EmbeddedBroker | None = None
        self.cluster: ClusterWorker | None = None
        self.duties: Duties | None = None
        self.forwarding: ForwardedWrites | None = None
        self.relay: LiveRelay | None = None
        # Registered in every mode, so the metrics reference lists them; set only in worker mode.
        self.listen_metrics = ListenMetrics(self.registry)
        self.worker_metrics = WorkerMetrics(self.registry)
        self.http: HttpServer | None = None
        self.rules: RulesEngine | None = None
        self.commands: CommandService | None = None
        self.console: Console | None = None
        self.maintenance: MaintenanceService | None = None
        self.notifications: NotificationService | None = None
        self.reports: ReportService | None = None
        self.security_store: SecurityStore = security_store(self.database)
        self.security = SecurityService(
            self.security_store,
            verify_cache_s=settings.auth.verify_cache_s,
            token_ttl_s=settings.auth.token_ttl_days * 86400,
            max_token_ttl_s=settings.auth.max_token_ttl_days * 86400,
            bootstrap_token=settings.auth.bootstrap_token,
        )

    @property
    def mqtt_port(self) -> int:
        if self.broker is None:
            raise RuntimeError("the hub is not started")
        return self.broker.port

    @property
    def tls_port(self) -> int | None:
        return self.broker.tls_port if self.broker is not None else None

    @property
    def ws_port(self) -> int | None:
        return self.broker.ws_port if self.broker is not None else None

    @property
    def http_port(self) -> int:
        if self.http is None:
            raise RuntimeError("the hub is not started")
        return self.http.port

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        s = self.settings
        # Migrates the database before any store reads it; closed last, after every store.
        await self._stack.enter_async_context(self.database)
        await self._stack.enter_async_context(self.store)
        # The rules engine starts after the broker but stops after the ingest drain, so an
        # update committed while the hub stops is still evaluated and its alert stored.
        rules_stack = contextlib.AsyncExitStack()
        self._stack.push_async_callback(rules_stack.aclose)
        await self._stack.enter_async_context(self.security_store)
        self.security.on_provision.append(self._provision_twin)
        self._consumer = asyncio.get_running_loop().create_task(self.service.run(), name="twin-consumer")
        self._stack.push_async_callback(self._drain_ingest)
        maintenance = asyncio.get_running_loop().create_task(
            run_maintenance(self.store, s.store.maintenance_interval_s), name="store-maintenance"
        )
        self._stack.push_async_callback(cancel_and_wait, [maintenance])
        # Registered before the broker starts so no committed update is missed; evaluated once started.
        self.rules = rules_engine(s, self.database, self.store)
        if self.rules is not None:
            self.service.observers.append(self.rules)
        self.maintenance = maintenance_service(s, self.database, self.service, self.store, self.rules)
        # Started before the broker, so results and presence reach it from the first connection.
        rules = self.rules
        zones = (lambda: rules.core.zones) if rules is not None else None
        self.commands = command_service(s, self.database, self.service, zones, self.registry)
        await self._stack.enter_async_context(self.commands.store)
        await self._stack.enter_async_context(self.commands)
        self.service.commands = self.commands
        if s.cluster.enabled:
            await self._join_cluster(self.commands)
        else:
            await self._start_broker(self.commands)
        # Before the rules engine starts: the console's live feed sees every alert it publishes.
        self.console = console_of(s, self.service, self.rules, self.commands, self.registry)
        if self.console is not None:
            await self._stack.enter_async_context(self.console)
        if self.cluster is not None:
            # Other nodes' consoles hear of this node's changes, and this node's of theirs.
            self.relay = await relay_live(
                self._stack, self.cluster, self.store, self.console, self.rules, self.commands, self.listen_metrics
            )
        if s.notifications.enabled:
            self.notifications = NotificationService(
                notification_store(self.database), s.notifications, metrics=NotificationMetrics(self.registry)
            )
            if self.duties is not None:
                self.duties.notifications(self.notifications)
            await self._stack.enter_async_context(self.notifications.store)
            await self._stack.enter_async_context(self.notifications)
            if self.rules is not None:
                # Alert events reach the outbox before their MQTT publish, from the rules engine's writer task.
                self.rules.publisher = self.notifications.tee(self.rules.publisher)
        if self.rules is not None:
            await start_rules(rules_stack, self.rules)
        if self.cluster is not None:
            # Once the rules engine has loaded its rules: partitions it adopts are rebuilt against them.
            await self.cluster.start_leases()
        if s.reports.enabled:
            self.reports = ReportService(
                self.store,
                self.store,
                settings=s.reports,
                alerts=self.rules,
                zones=zones,
                sink=self.notifications,
                store=report_store(self.database),
            )
            if self.duties is not None:
                self.duties.reports(self.reports)
            if self.reports.store is not None:
                await self._stack.enter_async_context(self.reports.store)
            await self._stack.enter_async_context(self.reports)
        if self.maintenance is not None:
            # After the rules engine: due alerts go through its lifecycle.
            await self._stack.enter_async_context(self.maintenance.store)
            await self._stack.enter_async_context(self.maintenance)
        deps = ApiDeps(
            service=self.service,
            history=self.store,
            registry=self.registry,
            health=self.health,
            max_page_size=s.http.max_page_size,
            max_history_rows=s.http.max_history_rows,
            export_rows_per_read=s.http.export_rows_per_read,
            export_chunk_bytes=s.http.export_chunk_bytes,
            max_body_depth=s.http.max_body_depth,
            max_body_bytes=s.limits.max_payload_bytes,
            rules=self.rules,
            commands=self.commands,
            security=self.security,
            auth_enabled=s.auth.enabled,
            public_health=s.auth.public_health,
            public_metrics=s.auth.public_metrics,
            console=self.console,
            maintenance=self.maintenance,
            notifications=self.notifications,
            reports=self.reports,
            broker_auth=self._broker_auth(),
        )
        self.http = HttpServer(create_app(deps), s.http.host, s.http.port)
        await self._stack.enter_async_context(self.http)
        if self.console is not None:
            # Live streams end before the HTTP server stops, which would otherwise wait for them.
            self._stack.callback(self.console.close_streams)
        info = await self.store.info()
        if self.broker is not None:
            log.info(
                "hub started",
                mqtt_port=self.mqtt_port,
                http_port=self.http_port,
                store=info.backend,
                schema_version=info.schema_version,
                mqtt_tls_port=self.broker.tls_port,
                mqtt_ws_port=self.broker.ws_port,
            )
        elif self.cluster is not None:
            log.info(
                "hub started",
                http_port=self.http_port,
                store=info.backend,
                schema_version=info.schema_version,
                **self.cluster.status(),
            )
        _warn_if_insecure(s)
        if s.auth.enabled and not s.auth.bootstrap_token and not await self.security_store.list_users():
            log.warning(
                "no users yet: every HTTP request is refused until you create the first admin",
                create_admin=f"fleethub users add admin --role admin {_store_flag(s)}",
                then="use the API token it prints: curl -H 'Authorization: Bearer fh_...'",
                docs="docs/security.md, First start",
            )

    async def _start_broker(self, commands: CommandService) -> None:
        """The embedded broker (the default): vehicles connect to this process."""
        s = self.settings
        self.broker = EmbeddedBroker(
            self.service,
            host=s.mqtt.host,
            port=s.mqtt.port,
            max_payload_bytes=s.limits.max_payload_bytes,
            allow_anonymous=s.mqtt.allow_anonymous,
            session_expiry_s=s.mqtt.session_expiry_s,
            max_queued_messages=s.mqtt.max_queued_messages,
            listen_backlog=s.mqtt.listen_backlog,
            max_packet_bytes=s.mqtt.max_packet_bytes,
            max_queued_bytes=s.mqtt.max_queued_bytes,
            slow_subscriber=s.mqtt.slow_subscriber,
            connect_timeout_s=s.mqtt.connect_timeout_s,
            max_connections_per_address=s.mqtt.max_connections_per_address,
            fd_headroom=s.mqtt.fd_headroom,
            max_inflight_messages=s.mqtt.max_inflight_messages,
            receive_maximum=s.mqtt.receive_maximum,
            topic_alias_maximum=s.mqtt.topic_alias_maximum,
            sys_interval_s=s.mqtt.sys_interval_s,
            max_keep_alive_s=s.mqtt.max_keep_alive_s,
            server_reference=s.mqtt.server_reference,
            max_sessions=s.mqtt.max_sessions,
            max_retained_messages=s.mqtt.max_retained_messages,
            max_retained_bytes=s.mqtt.max_retained_bytes,
            store=(
                broker_store(self.database, QueueLimits(s.mqtt.max_queued_messages, s.mqtt.max_queued_bytes))
                if s.mqtt.persistence
                else None
            ),
            store_writer=WriterSettings(
                max_pending=s.mqtt.store_max_pending,
                batch_max=s.mqtt.store_batch_max,
                sweep_interval_s=s.mqtt.store_sweep_interval_s,
                # One stop budget for both commit paths: what is not committed by then stays unacknowledged.
                close_timeout_s=s.ingest.shutdown_timeout_s,
            ),
            store_metrics=BrokerStoreMetrics(self.registry),
            metrics=BrokerMetrics(self.registry),
            security=self.security,
            abuse=s.abuse,
            tls=_tls_listener(s),
            ws_port=s.mqtt.ws_port if s.mqtt.ws_enabled else None,
        )
        await self._stack.enter_async_context(self.broker)
        self.security.on_vehicle_revoked.append(self.broker.disconnect_vehicle)
        self.security.on_token_revoked.append(self.broker.disconnect_token)
        self.security.on_user_removed.append(self.broker.disconnect_user)
        self.service.channel = self.broker.channel
        commands.channel = self.broker.channel
        commands.publisher = self.broker
        if self.rules is not None:
            self.rules.publisher = self.broker

    async def _join_cluster(self, commands: CommandService) -> None:
        """Worker mode (or an API node): partition leases and, for a worker, the external broker."""
        s = self.settings
        if not isinstance(self.database, PostgresDatabase):
            raise ConfigError("worker mode needs PostgreSQL: set store.url to a postgresql:// URL")
        self.cluster = ClusterWorker(s.cluster, self.database, self.service, rules=self.rules, commands=commands)
        self.worker_metrics.worker = self.cluster
        # Before the first leases: the listeners see every partition this worker gains.
        self.duties = duties = Duties(self.cluster)
        if self.maintenance is not None:
            duties.maintenance(self.maintenance)
        for enricher in self.service.enrichers:
            if isinstance(enricher, MeterDeriver):
                duties.meters(enricher)
        await self._stack.enter_async_context(self.cluster)
        # Twin writes of vehicles this node does not own are applied by their owner.
        self.forwarding = ForwardedWrites(
            s.cluster, self.database, self.service, self.cluster, metrics=self.listen_metrics
        )
        await self._stack.enter_async_context(self.forwarding)
        self.service.route = self.forwarding
        if s.cluster.role == "worker":
            self.service.channel = self.cluster.channel
            commands.channel = self.cluster.channel
            commands.publisher = self.cluster.channel
            if self.rules is not None:
                self.rules.publisher = self.cluster.channel

    def _broker_auth(self) -> BrokerAuthConfig | None:
        """The /broker-auth endpoints for an external broker, when auth.broker_secret is set."""
        s = self.settings
        if not s.auth.broker_secret:
            return None
        access = ExternalAuth(
            self.security,
            limits=s.abuse,
            registry=self.registry,
            max_pending_logins=s.auth.broker_max_pending_logins,
        )
        return BrokerAuthConfig(access, s.auth.broker_secret, s.auth.rabbitmq_vhost, s.auth.rabbitmq_exchange)

    async def _provision_twin(self, vehicle_id: str, fleet: str, tags: Mapping[str, str]) -> None:
        await self.service.provision(vehicle_id, fleet, dict(tags))

    async def _drain_ingest(self) -> None:
        """Commit what is queued, within `ingest.shutdown_timeout_s`; nothing else is acknowledged."""
        consumer = self._consumer
        if consumer is None:
            return
        if not consumer.done():
            self.service.stop()
        # The consumer keeps the deadline itself; this bounds a store call that never returns.
        grace = self.settings.ingest.shutdown_timeout_s + 2.0
        try:
            await asyncio.wait_for(asyncio.shield(consumer), grace)
        except TimeoutError:
            log.error("ingest did not stop in time; leaving the rest unacknowledged", waited_s=grace)
            await cancel_and_wait([consumer])

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        log.info("hub stopping")
        self.database.stopping()
        await self._stack.aclose()
        log.info("hub stopped")

    async def wait(self, stop: asyncio.Event) -> None:
        """Return when `stop` is set; raise if a part of the hub died on its own."""
        watched: list[asyncio.Future[object]] = [asyncio.ensure_future(stop.wait())]
        cluster = self.cluster.tasks if self.cluster is not None else []
        cluster += self.forwarding.tasks if self.forwarding is not None else []
        for task in (self._consumer, self.http.task if self.http else None, *cluster):
            if task is not None:
                watched.append(task)  # type: ignore[arg-type]
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        if watched[0] not in done:
            watched[0].cancel()
            failed = next(iter(done))
            failed.result()
            raise RuntimeError("a part of the hub stopped unexpectedly")

    async def health(self) -> Health:
        components: dict[str, ComponentHealth] = {}
        try:
            await asyncio.wait_for(self.store.ping(), timeout=2)
            info = await self.store.info()
            components["store"] = ComponentHealth(
                "ok", {"backend": info.backend, "schema_version": info.schema_version, "detail": info.detail}
            )
        # Health reports a failing store; it must never raise itself.
        except Exception as exc:
            components["store"] = ComponentHealth("failing", {"error": f"{type(exc).__name__}: {exc}"})
        ingest = self.service.health()
        ingest_ok = ingest.running and ingest.last_commit_error is None
        components["ingest"] = ComponentHealth(
            "ok" if ingest_ok else "failing",
            {
                "queue_depth": ingest.queue_depth,
                "queue_max": ingest.queue_max,
                "in_flight": ingest.in_flight,
                "last_commit_at": ingest.last_commit_at,
                "last_commit_error": ingest.last_commit_error,
                "twins_cached": ingest.twins_cached,
                # Quarantined items do not make ingest unhealthy: everyone else's data commits.
                "dead_letters": ingest.dead_letters,
                "last_dead_letter_at": ingest.last_dead_letter_at,
                "last_dead_letter_reason": ingest.last_dead_letter_reason,
            },
        )
        if self.cluster is not None:
            worker = self.cluster.status()
            ok = worker["broker_connected"] is not False
            # Reported, not failing: without its LISTEN connections the node polls forwarded writes
            # and its console misses other nodes' changes until the relay reconnects and re-reads.
            if self.forwarding is not None:
                worker["forwarded_writes"] = self.forwarding.status()
            if self.relay is not None:
                worker["live_relay"] = self.relay.status()
            components["cluster"] = ComponentHealth("ok" if ok else "failing", worker)
            overall = "ok" if all(c.status == "ok" for c in components.values()) else "failing"
            return Health(status=overall, components=components)
        broker_ok = self.broker is not None and self.broker.running
        components["broker"] = ComponentHealth(
            "ok" if broker_ok else "failing",
            {
                "port": self.broker.port if self.broker else None,
                "connected_clients": self.broker.connected_clients() if self.broker else 0,
                "connected_vehicles": self.service.online_vehicles,
            },
        )
        status = "ok" if all(c.status == "ok" for c in components.values()) else "failing"
        return Health(status=status, components=components)


def _tls_listener(settings: Settings) -> TlsListener | None:
    mqtt = settings.mqtt
    if not (mqtt.tls_certfile and mqtt.tls_keyfile):
        return None
    return TlsListener(
        port=mqtt.tls_port,
        certfile=mqtt.tls_certfile,
        keyfile=mqtt.tls_keyfile,
        cafile=mqtt.tls_cafile,
        client_cert_auth=mqtt.tls_client_cert_auth,
    )


def _store_flag(settings: Settings) -> str:
    """How to point a CLI command at this hub's store, without repeating a password from its URL."""
    url = settings.store.url
    if url.startswith("sqlite:"):
        return f"--database {url}"
    return "--database <the hub's store URL> (or --config <the hub's TOML file>)"


def _warn_if_insecure(settings: Settings) -> None:
    if not settings.auth.enabled:
        log.warning(
            "authentication of HTTP requests is OFF (auth.enabled = false): development mode, do not expose this hub"
        )
    if settings.mqtt.allow_anonymous:
        log.warning("anonymous MQTT clients are allowed (mqtt.allow_anonymous = true): development mode, no topic ACL")
