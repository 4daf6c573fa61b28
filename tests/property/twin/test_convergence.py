"""Ingest is order-insensitive and idempotent: any delivery order gives the same twin."""

from hypothesis import given
from hypothesis import strategies as st

from twin import TwinState, apply_reported, flatten
from twin.paths import materialise

keys = st.sampled_from(["soc", "speed", "gps", "lat", "lon", "doors", "locked"])
scalars = st.one_of(st.integers(-5, 5), st.booleans(), st.text(max_size=3), st.none())
values = st.recursive(scalars, lambda inner: st.dictionaries(keys, inner, min_size=1, max_size=3), max_leaves=6)
patches = st.dictionaries(keys, values, min_size=1, max_size=4)
messages = st.lists(st.tuples(patches, st.integers(0, 20).map(float)), min_size=1, max_size=12)


def _twin_after(stream: list[tuple[dict, float]]) -> dict:
    state = TwinState(vehicle_id="v", created_at=0.0, updated_at=0.0)
    for patch, ts in stream:
        apply_reported(state, flatten(patch), ts)
    return materialise(state.reported)[0]


@given(messages, st.randoms(use_true_random=False))
def test_any_permutation_converges(stream: list, rnd) -> None:
    """Delivering the same messages in any order yields the same reported document."""
    shuffled = list(stream)
    rnd.shuffle(shuffled)
    assert _twin_after(shuffled) == _twin_after(stream)


@given(messages, st.randoms(use_true_random=False))
def test_duplicates_change_nothing(stream: list, rnd) -> None:
    """Redelivering any subset of messages (resends, replays) yields the same document."""
    dupes = stream + [m for m in stream if rnd.random() < 0.5]
    rnd.shuffle(dupes)
    assert _twin_after(dupes) == _twin_after(stream)


@given(messages, st.integers(0, 12))
def test_split_between_two_workers_converges(stream: list, cut: int) -> None:
    """Two workers each ingesting part of the stream, then merging entries, agree with one worker."""
    a = TwinState(vehicle_id="v", created_at=0.0, updated_at=0.0)
    b = TwinState(vehicle_id="v", created_at=0.0, updated_at=0.0)
    for patch, ts in stream[:cut]:
        apply_reported(a, flatten(patch), ts)
    for patch, ts in stream[cut:]:
        apply_reported(b, flatten(patch), ts)
    for key, entry in b.reported.items():
        apply_reported(a, [(tuple(key.split("\x1f")), entry.value)], entry.ts)
    assert materialise(a.reported)[0] == _twin_after(stream)
