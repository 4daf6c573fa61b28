"""The JSON depth scanner on hand-picked bodies."""

import pytest

from kernel import json_depth


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b"", 0),
        (b"42", 0),
        (b"{}", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'{"a": "[[[[{{{{"}', 1),
        (b'{"a": "\\"[[[["}', 1),
        (b'["\\\\", [[]]]', 3),
        (b"[" * 5000 + b"]" * 5000, 5000),
    ],
)
def test_depth(body: bytes, depth: int) -> None:
    """Nesting outside strings counts; brackets inside strings (escaped quotes included) do not."""
    assert json_depth(body) == depth
