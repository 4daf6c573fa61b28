"""How deeply a JSON text nests, found without decoding it.

Decoders recurse once per level: `"[" * 1000 + "]" * 1000` (2 KB) exhausts the
interpreter's recursion limit inside msgspec. Every JSON that arrives from outside
(an MQTT payload, an HTTP body) is measured here first and refused when too deep.
"""

from __future__ import annotations

import re
from itertools import accumulate

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(text: bytes) -> int:
    """The deepest nesting of arrays and objects in `text` (brackets inside strings ignored).

    The regex and `translate` run in C; Python steps only through the brackets themselves.
    """
    if b"[" not in text and b"{" not in text:
        return 0
    brackets = _STRING.sub(b"", text).translate(None, _NOT_BRACKET)
    steps = (1 if c in b"[{" else -1 for c in brackets)
    return max(accumulate(steps), default=0)


def deeper_than(text: bytes, limit: int) -> bool:
    """Whether `text` nests more than `limit` levels; cheap when it has few brackets at all."""
    # Counting opening brackets is one pass in C; most payloads have fewer than the limit.
    if text.count(b"[") + text.count(b"{") <= limit:
        return False
    return json_depth(text) > limit
