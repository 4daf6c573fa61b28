"""Operational endpoints: health and Prometheus metrics."""

from __future__ import annotations

from litestar import MediaType, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.auth import OPT_PUBLIC_IF, requires
from api.deps import Deps, Health
from security import Permission

# Litestar appends the charset to every text/* type itself; naming it here too would send it twice.
METRICS_MEDIA_TYPE = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")


@get(
    "/healthz",
    tags=["operations"],
    summary="Health of the broker, store and ingest",
    opt=requires(Permission.OPS_READ, **{OPT_PUBLIC_IF: "public_health"}),
)
async def healthz(deps: Deps) -> Response[Health]:
    report = await deps.health()
    # A detail without a value (no commit error yet, no port while stopped) is left out, never null.
    for component in report.components.values():
        component.detail = {k: v for k, v in component.detail.items() if v is not None}
    return Response(report, status_code=200 if report.status == "ok" else 503)


@get(
    "/metrics",
    tags=["operations"],
    summary="Prometheus metrics",
    include_in_schema=True,
    media_type=MediaType.TEXT,
    opt=requires(Permission.OPS_READ, **{OPT_PUBLIC_IF: "public_metrics"}),
)
async def metrics(deps: Deps) -> Response[bytes]:
    return Response(generate_latest(deps.registry), media_type=METRICS_MEDIA_TYPE)
