"""`json_depth` counts the nesting of any JSON document exactly, whatever its strings hold."""

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from kernel import json_depth

# Strings full of the characters the scanner must not count: brackets, quotes and backslashes.
_TEXT = st.text(alphabet=st.sampled_from('[]{}"\\ab,: \n'), max_size=12)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=30,
)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@given(_JSON)
def test_depth_of_any_document_matches_its_structure(value: object) -> None:
    """The scanner agrees with the decoded structure, with brackets and escaped quotes inside strings ignored."""
    assert json_depth(msgspec.json.encode(value)) == _depth(value)
