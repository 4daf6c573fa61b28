"""The one paging shape every list answers with, and its opaque cursors.

Every list route returns `{"items": [...], "next_cursor": "..."}` (a route may add
context beside them, e.g. `vehicle_id`). `next_cursor` is there only when another
page follows: pass it back as `?cursor=` with the same filters. `limit` caps a page
(default 100, at most `http.max_page_size`). Cursors are opaque: a client must not
build or parse one, and a cursor that is not one the hub made is refused (422, reason
`bad_cursor`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

import msgspec
from litestar.params import QueryParameter

from kernel import InvalidPayload

T = TypeVar("T")

DEFAULT_LIMIT = 100

Limit = Annotated[
    int,
    QueryParameter(ge=1, le=10_000, description="Items per page (at most http.max_page_size; default 100)"),
]
Cursor = Annotated[
    str | None,
    QueryParameter(max_length=512, description="next_cursor of the previous page, with the same filters"),
]

PAGING_DOC = (
    'Every list answers `{"items": [...], "next_cursor": "..."}`; `next_cursor` is present only when '
    "another page follows: pass it back as `cursor` with the same filters. `limit` caps a page."
)


def encode_cursor(*parts: str | float | int) -> str:
    """An opaque cursor holding `parts` (the sort key of the last item sent)."""
    return base64.urlsafe_b64encode(msgspec.json.encode(parts)).decode().rstrip("=")


def decode_cursor(cursor: str, *kinds: type[Any]) -> tuple[Any, ...]:
    """The parts of a cursor `encode_cursor` made, checked against `kinds`; 400 for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = msgspec.json.decode(raw, type=tuple[*kinds])  # type: ignore[valid-type]
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidPayload("bad_cursor", "cursor is not one this hub made; pass next_cursor back unchanged") from None
    return tuple(parts)


def page_size(limit: int, max_page_size: int) -> int:
    return max(1, min(limit, max_page_size))


def page_of(items: Sequence[T], key: Callable[[T], str], limit: int, cursor: str | None) -> tuple[list[T], str | None]:
    """One page of an in-memory list sorted by `key` (unique), after the cursor's key."""
    after = decode_cursor(cursor, str)[0] if cursor is not None else None
    rest = [item for item in items if after is None or key(item) > after]
    page = rest[:limit]
    return page, encode_cursor(key(page[-1])) if len(rest) > limit else None
