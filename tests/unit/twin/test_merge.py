from twin import TwinState, apply_reported, flatten, merge_patch
from twin.merge import apply_desired, compute_delta, json_equal, refresh_desired_status, reject_desired
from twin.model import DesiredStatus
from twin.paths import materialise


def _twin() -> TwinState:
    return TwinState(vehicle_id="veh-1", created_at=0.0, updated_at=0.0)


def _report(state: TwinState, patch: dict, ts: float):
    return apply_reported(state, flatten(patch), ts)


def _reported(state: TwinState) -> dict:
    return materialise(state.reported)[0]


def test_merge_patch_recurses_deletes_and_replaces_arrays() -> None:
    """Objects merge recursively, null deletes a key, arrays are replaced whole."""
    target = {"a": {"b": 1, "c": 2}, "arr": [1, 2, 3], "gone": 1}
    out = merge_patch(target, {"a": {"c": 3, "d": 4}, "arr": [9], "gone": None})
    assert out == {"a": {"b": 1, "c": 3, "d": 4}, "arr": [9]}
    assert target["a"] == {"b": 1, "c": 2}, "the input is not mutated"


def test_reported_nested_merge_and_null_delete() -> None:
    """Telemetry merges into nested reported state and null deletes a key."""
    state = _twin()
    _report(state, {"gps": {"lat": 1.0, "lon": 2.0}, "soc": 50}, ts=10)
    _report(state, {"gps": {"lat": 1.5}, "soc": None}, ts=11)
    assert _reported(state) == {"gps": {"lat": 1.5, "lon": 2.0}}


def test_older_update_is_not_applied_to_a_newer_key() -> None:
    """A key written at device time 20 ignores a later-arriving write from time 15."""
    state = _twin()
    _report(state, {"soc": 60}, ts=20)
    change = _report(state, {"soc": 70, "speed": 5}, ts=15)
    assert _reported(state) == {"soc": 60, "speed": 5}
    assert change.stale == [("soc",)]
    assert change.changed == [("speed",)]


def test_replaying_the_same_message_changes_nothing() -> None:
    """An identical replay is neither a change nor stale."""
    state = _twin()
    _report(state, {"soc": 60}, ts=20)
    change = _report(state, {"soc": 60}, ts=20)
    assert change.changed == []
    assert change.stale == []


def test_scalar_replaced_by_object_and_back_by_time() -> None:
    """Structure changes follow device time: the newest write to a path or its prefix wins."""
    state = _twin()
    _report(state, {"gps": {"lat": 1.0}}, ts=3)
    _report(state, {"gps": 5}, ts=2)  # older scalar at the prefix: hidden
    assert _reported(state) == {"gps": {"lat": 1.0}}
    _report(state, {"gps": "lost"}, ts=4)
    assert _reported(state) == {"gps": "lost"}


def test_json_equal_distinguishes_bool_from_number() -> None:
    """true never equals 1, but 80 equals 80.0."""
    assert json_equal(80, 80.0)
    assert not json_equal(True, 1)
    assert json_equal({"a": [1, 2]}, {"a": [1.0, 2]})
    assert not json_equal([1, 2], [2, 1])


def test_delta_lists_desired_values_not_matched_by_reported() -> None:
    """The delta holds desired leaves the vehicle has not reported yet, and shrinks as it does."""
    state = _twin()
    _report(state, {"charge_limit": 90, "config": {"report_interval_s": 10}}, ts=1)
    apply_desired(state, {"charge_limit": 80, "config": {"report_interval_s": 10, "mode": "eco"}}, now=2)
    assert compute_delta(state) == {"charge_limit": 80, "config": {"mode": "eco"}}
    _report(state, {"charge_limit": 80}, ts=3)
    refresh_desired_status(state, now=3)
    assert compute_delta(state) == {"config": {"mode": "eco"}}
    assert state.desired_meta["charge_limit"].status is DesiredStatus.APPLIED


def test_delta_is_empty_iff_reported_satisfies_desired() -> None:
    """Once every desired leaf is reported, the delta is empty."""
    state = _twin()
    apply_desired(state, {"a": 1, "b": {"c": True}}, now=1)
    assert compute_delta(state) == {"a": 1, "b": {"c": True}}
    _report(state, {"a": 1.0, "b": {"c": True}}, ts=2)
    refresh_desired_status(state, now=2)
    assert compute_delta(state) == {}


def test_rejected_and_expired_leave_the_delta() -> None:
    """A leaf the vehicle rejected, or whose ttl ran out, is no longer sent."""
    state = _twin()
    apply_desired(state, {"charge_limit": 120}, now=1)
    apply_desired(state, {"mode": "eco"}, now=1, ttl_s=10)
    assert reject_desired(state, {"charge_limit": "out of range", "nope": "x"}) == ["nope"]
    refresh_desired_status(state, now=20)
    assert state.desired_meta["mode"].status is DesiredStatus.EXPIRED
    assert compute_delta(state) == {}


def test_deleting_a_desired_subtree_clears_its_lifecycle() -> None:
    """null on a desired object removes it and every lifecycle entry beneath it."""
    state = _twin()
    apply_desired(state, {"config": {"a": 1, "b": 2}}, now=1)
    apply_desired(state, {"config": None}, now=2)
    assert state.desired == {}
    assert state.desired_meta == {}


def test_clear_applied_removes_key_from_desired() -> None:
    """A key patched with clear_applied leaves desired (and the lifecycle) once the vehicle applies it."""
    state = _twin()
    apply_desired(state, {"doors": {"locked": True}, "charge_limit": 80}, now=1, clear_applied=True)
    apply_desired(state, {"mode": "eco"}, now=1)
    _report(state, {"doors": {"locked": True}, "mode": "eco"}, ts=2)
    assert refresh_desired_status(state, now=2)
    assert state.desired == {"charge_limit": 80, "mode": "eco"}
    assert set(state.desired_meta) == {"charge_limit", "mode"}
    assert compute_delta(state) == {"charge_limit": 80}
