"""The Litestar application."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from api.alerts import AlertsController
from api.audit import AuditController
from api.auth import authorize, principal_of
from api.body_depth import limit_json_depth
from api.broker_auth import BrokerAuthController
from api.commands import FleetCommandsController, VehicleCommandsController
from api.console import console_routes
from api.dead_letters import DeadLetterController
from api.deps import ApiDeps
from api.history import HistoryController
from api.maintenance import MaintenanceController, VehicleMaintenanceController
from api.metrics import HttpMetrics, observe_requests
from api.notifications import NotificationsController
from api.openapi import DESCRIPTION, document_problems
from api.ops import healthz, metrics
from api.problems import fleethub_error_handler, http_exception_handler
from api.provisioning import ProvisioningController
from api.reports import ReportsController
from api.rules import RulesController
from api.session import SessionController
from api.trips import TripController
from api.users import TokensController, UsersController
from api.vehicles import VehicleController
from api.zones import ZonesController
from kernel import FleethubError
from security import Principal

_SWAGGER = "/console/vendor/swagger-ui-dist"


def create_app(deps: ApiDeps) -> Litestar:
    http_metrics = HttpMetrics(deps.registry)

    def provide_deps() -> ApiDeps:
        return deps

    def provide_principal(request: Request[Any, Any, Any]) -> Principal:
        return principal_of(request)

    app = Litestar(
        route_handlers=[
            VehicleController,
            HistoryController,
            TripController,
            RulesController,
            AlertsController,
            ZonesController,
            VehicleCommandsController,
            FleetCommandsController,
            ProvisioningController,
            UsersController,
            TokensController,
            AuditController,
            DeadLetterController,
            MaintenanceController,
            VehicleMaintenanceController,
            NotificationsController,
            ReportsController,
            healthz,
            metrics,
            SessionController,
            BrokerAuthController,
            *console_routes(enabled=deps.console is not None),
        ],
        dependencies={
            "deps": Provide(provide_deps, use_cache=True, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        # Every route: authenticate, check the permission it declares, scope it to the caller's fleets.
        guards=[authorize],
        state=State({"fleethub_deps": deps}),
        exception_handlers={
            FleethubError: fleethub_error_handler,
            HTTPException: http_exception_handler,
            Exception: fleethub_error_handler,
        },
        middleware=[observe_requests(http_metrics), limit_json_depth(deps.max_body_depth, deps.max_body_bytes)],
        openapi_config=OpenAPIConfig(
            title="fleethub",
            version="1",
            description=DESCRIPTION,
            path="/schema",
            # Served from the hub's own copy of swagger-ui-dist, so the page works offline.
            render_plugins=[
                SwaggerRenderPlugin(
                    js_url=f"{_SWAGGER}/swagger-ui-bundle.js",
                    css_url=f"{_SWAGGER}/swagger-ui.css",
                    standalone_preset_js_url=f"{_SWAGGER}/swagger-ui-standalone-preset.js",
                    favicon="<link rel='icon' type='image/svg+xml' href='/console/favicon.svg'>",
                )
            ],
        ),
        request_max_body_size=deps.max_body_bytes,
        # The hub configures logging once (fleethub.logs); Litestar must not reconfigure the root logger.
        logging_config=None,
        debug=False,
    )
    document_problems(app)
    return app
