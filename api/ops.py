"""Operational endpoints: health and Prometheus metrics."""

from __future__ import annotations

from litestar import Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import Deps, Health


@get("/healthz", tags=["operations"], summary="Health of the broker, store and ingest")
async def healthz(deps: Deps) -> Response[Health]:
    report = await deps.health()
    return Response(report, status_code=200 if report.status == "ok" else 503)


@get("/metrics", tags=["operations"], summary="Prometheus metrics", include_in_schema=True)
async def metrics(deps: Deps) -> Response[bytes]:
    return Response(generate_latest(deps.registry), media_type=CONTENT_TYPE_LATEST)
