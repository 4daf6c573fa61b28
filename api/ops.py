"""Operational endpoints: health and Prometheus metrics."""

from __future__ import annotations

from litestar import Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.auth import OPT_PUBLIC_IF, requires
from api.deps import Deps, Health
from security import Permission


@get(
    "/healthz",
    tags=["operations"],
    summary="Health of the broker, store and ingest",
    opt=requires(Permission.OPS_READ, **{OPT_PUBLIC_IF: "public_health"}),
)
async def healthz(deps: Deps) -> Response[Health]:
    report = await deps.health()
    return Response(report, status_code=200 if report.status == "ok" else 503)


@get(
    "/metrics",
    tags=["operations"],
    summary="Prometheus metrics",
    include_in_schema=True,
    opt=requires(Permission.OPS_READ, **{OPT_PUBLIC_IF: "public_metrics"}),
)
async def metrics(deps: Deps) -> Response[bytes]:
    return Response(generate_latest(deps.registry), media_type=CONTENT_TYPE_LATEST)
