"""The Litestar application."""

from __future__ import annotations

from litestar import Litestar
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin

from api.alerts import AlertsController
from api.commands import FleetCommandsController, VehicleCommandsController
from api.deps import ApiDeps
from api.history import HistoryController
from api.metrics import HttpMetrics, observe_requests
from api.ops import healthz, metrics
from api.problems import fleethub_error_handler, http_exception_handler
from api.rules import RulesController
from api.trips import TripController
from api.vehicles import VehicleController
from api.zones import ZonesController
from twin import FleethubError


def create_app(deps: ApiDeps) -> Litestar:
    http_metrics = HttpMetrics(deps.registry)

    def provide_deps() -> ApiDeps:
        return deps

    return Litestar(
        route_handlers=[
            VehicleController,
            HistoryController,
            TripController,
            RulesController,
            AlertsController,
            ZonesController,
            VehicleCommandsController,
            FleetCommandsController,
            healthz,
            metrics,
        ],
        dependencies={"deps": Provide(provide_deps, use_cache=True, sync_to_thread=False)},
        exception_handlers={
            FleethubError: fleethub_error_handler,
            HTTPException: http_exception_handler,
            Exception: fleethub_error_handler,
        },
        middleware=[observe_requests(http_metrics)],
        openapi_config=OpenAPIConfig(
            title="fleethub",
            version="1",
            description="Vehicle twins, history and alerts over MQTT and HTTP.",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin(), ScalarRenderPlugin()],
        ),
        request_max_body_size=deps.max_body_bytes,
        # The hub configures logging once (fleethub.logs); Litestar must not reconfigure the root logger.
        logging_config=None,
        debug=False,
    )
