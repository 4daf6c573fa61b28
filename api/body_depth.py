"""Refuse JSON request bodies nested too deeply, before anything decodes them.

Decoders recurse once per level: a 10 KB body of `[[[[...` exhausts the interpreter's
recursion limit inside the framework's decoding, where it would be a 500. This ASGI
middleware reads a JSON body (bounded by the body size limit, which the app enforces
anyway), counts its nesting outside strings, and answers 400 with a problem document
when it is deeper than `http.max_body_depth`; otherwise it hands the same bytes on.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from api.problems import PROBLEM_JSON, Problem
from kernel import json_depth

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return b"json" in value.lower()
    return False


def limit_json_depth(max_depth: int, max_body_bytes: int) -> Any:
    """ASGI middleware factory: 400 for JSON bodies deeper than `max_depth`."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP or scope["method"] not in _BODY_METHODS or not _is_json(scope):
                await app(scope, receive, send)
                return
            chunks: list[bytes] = []
            size, more = 0, False
            first: list[Any] = []
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    first.append(message)
                    break
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if not message.get("more_body", False) or size > max_body_bytes:
                    # Over the size limit: stop reading; the app refuses it (413) from what is left.
                    more = bool(message.get("more_body", False))
                    break
            body = b"".join(chunks)
            if size <= max_body_bytes and json_depth(body) > max_depth:
                await _refuse(scope, send, max_depth)
                return
            replayed: list[Any] = [
                {"type": "http.request", "body": body, "more_body": size > max_body_bytes and more},
                *first,
            ]

            async def replay() -> Any:
                return replayed.pop(0) if replayed else await receive()

            await app(scope, replay, send)

        return wrapped

    return middleware


async def _refuse(scope: Scope, send: Send, max_depth: int) -> None:
    problem = Problem(
        "https://fleethub.dev/problems/bad-request",
        "Bad request",
        400,
        f"the JSON body is nested more than {max_depth} levels deep (http.max_body_depth)",
        instance=scope["path"],
        reason="too_deep",
    )
    body = msgspec.json.encode(problem)
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
