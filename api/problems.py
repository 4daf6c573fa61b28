"""RFC 9457 problem documents: the one place errors become HTTP responses."""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from kernel import FleethubError, InvalidPayload, LimitExceeded, NotFound, StoreError, StoreRejected
from security import AlreadyExists
from twin import OwnerUnavailable, VersionConflict

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"


class Problem(msgspec.Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    # Extension members (RFC 9457 section 3.2).
    reason: str | None = None
    current_version: int | None = None
    errors: list[dict[str, Any]] | None = None


def problem_response(
    request: Request[Any, Any, Any], problem: Problem, headers: dict[str, str] | None = None
) -> Response[Problem]:
    problem.instance = problem.instance or request.url.path
    return Response(problem, status_code=problem.status, media_type=PROBLEM_JSON, headers=headers)


def _type(slug: str) -> str:
    return f"https://fleethub.dev/problems/{slug}"


def fleethub_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    match exc:
        case NotFound():
            problem = Problem(_type("not-found"), "Not found", 404, str(exc))
        case AlreadyExists():
            problem = Problem(_type("already-exists"), "Already exists", 409, str(exc))
        case VersionConflict():
            problem = Problem(_type("version-conflict"), "Version conflict", 409, str(exc), current_version=exc.current)
            return problem_response(request, problem, {"ETag": f'"{exc.current}"'})
        case LimitExceeded():
            problem = Problem(_type("limit-exceeded"), "Limit exceeded", 422, exc.detail, reason=exc.reason)
        case InvalidPayload():
            problem = Problem(_type("invalid-payload"), "Invalid payload", 422, exc.detail, reason=exc.reason)
        case RecursionError():
            # Decoding recursed past the interpreter's limit: too deep to be a request the hub serves.
            problem = Problem(
                _type("bad-request"), "Bad request", 400, "the request is nested too deeply", reason="too_deep"
            )
        case StoreRejected():
            problem = Problem(
                _type("store-rejected"), "Refused by the database", 422, str(exc), reason="store_rejected"
            )
        case OwnerUnavailable():
            problem = Problem(
                _type("owner-unavailable"), "Owner unavailable", 503, str(exc), reason="owner_unavailable"
            )
            return problem_response(request, problem, {"Retry-After": str(exc.retry_after_s)})
        case StoreError():
            log.error("store error", path=request.url.path, error=str(exc))
            problem = Problem(_type("store-unavailable"), "Store unavailable", 503, str(exc))
        case FleethubError():
            problem = Problem(_type("error"), "Request refused", 400, str(exc))
        case _:
            log.exception("unhandled error", path=request.url.path)
            problem = Problem(_type("internal"), "Internal error", 500, "the hub failed to handle this request")
    return problem_response(request, problem)


def http_exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    if isinstance(exc, ValidationException):
        errors = exc.extra if isinstance(exc.extra, list) else None
        problem = Problem(_type("bad-request"), "Bad request", 400, exc.detail or "invalid request", errors=errors)
        return problem_response(request, problem)
    if isinstance(exc, HTTPException):
        status = exc.status_code
        title = {
            400: "Bad request",
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not found",
            405: "Method not allowed",
            413: "Payload too large",
            415: "Unsupported media type",
            429: "Too many requests",
        }.get(status, "HTTP error")
        return problem_response(request, Problem(_type(f"http-{status}"), title, status, exc.detail), exc.headers)
    return fleethub_error_handler(request, exc)
