"""HTTP request metrics and the one log line per request."""

from __future__ import annotations

import time
import uuid
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Histogram

log = structlog.get_logger("fleethub.http")


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "fleethub_http_request_seconds",
            "HTTP request latency by route and status",
            ["method", "route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )


def observe_requests(metrics: HttpMetrics) -> Any:
    """ASGI middleware factory: latency histogram, request id, one log line per request."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            http_scope: HTTPScope = scope
            started = time.perf_counter()
            status = 500
            headers = dict(scope.get("headers", []))
            request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex[:16]

            async def send_wrapper(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                await send(message)

            with structlog.contextvars.bound_contextvars(request_id=request_id):
                try:
                    await app(scope, receive, send_wrapper)
                finally:
                    elapsed = time.perf_counter() - started
                    route = scope.get("path_template") or "unmatched"
                    metrics.latency.labels(http_scope["method"], route, str(status)).observe(elapsed)
                    log.info(
                        "http request",
                        method=http_scope["method"],
                        path=http_scope["path"],
                        status=status,
                        duration_ms=round(elapsed * 1000, 2),
                    )

        return wrapped

    return middleware
