"""OpenAPI examples for request bodies: every route that takes a body shows at least one."""

from __future__ import annotations

from typing import Any

from litestar.openapi.spec import Example
from litestar.params import Body


def body(*examples: tuple[str, str, Any], description: str | None = None) -> Any:
    """A JSON body parameter whose OpenAPI entry carries `examples`: (key, summary, value) triples."""
    return Body(
        description=description,
        examples=[Example(summary=summary, value=value, id=key) for key, summary, value in examples],
    )
