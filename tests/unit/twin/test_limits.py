import pytest

from kernel import LimitExceeded
from twin import Limits, check_patch


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({"a": {"b": {"c": 1}}}, "too_deep"),
        ({"a": [[[1]]]}, "too_deep"),
        ({f"k{i}": i for i in range(6)}, "too_many_keys"),
        ({"k" * 9: 1}, "bad_key"),
        ({"": 1}, "bad_key"),
        ({"a\x1fb": 1}, "bad_key"),
        ({"s": "x" * 11}, "string_too_long"),
        ({"s": "nul\x00"}, "bad_string"),
        ({"list": ["ok", "x" * 11]}, "string_too_long"),
    ],
)
def test_each_limit_names_its_reason(patch, reason) -> None:
    """Every limit is enforced and reported with a machine-readable reason."""
    limits = Limits(max_depth=2, max_keys_per_patch=5, max_key_length=8, max_string_length=10)
    with pytest.raises(LimitExceeded) as info:
        check_patch(patch, limits)
    assert info.value.reason == reason


def test_within_limits_passes() -> None:
    """A patch at every limit is accepted."""
    check_patch({"a": {"b": "x" * 10}, "c": [1, 2], "d": None}, Limits(max_depth=2, max_string_length=10))
