"""The topic index finds exactly the filters the specification's matching rules (broker.filters) accept."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broker.filters import matches
from broker.topic_index import TopicIndex

_topic_level = st.sampled_from(["a", "b", "", "$SYS"])
topics = st.lists(_topic_level, min_size=1, max_size=4).map("/".join)
_filter_level = st.sampled_from(["a", "b", "", "+", "$SYS"])
filters = st.tuples(st.lists(_filter_level, min_size=1, max_size=4), st.booleans()).map(
    lambda parts: "/".join([*parts[0], "#"] if parts[1] else parts[0])
) | st.just("#")


@given(st.sets(filters, max_size=12), topics)
def test_match_agrees_with_the_reference(subscribed: set[str], topic: str) -> None:
    """For any valid filters and topic, the index finds exactly the filters the one-by-one matcher accepts."""
    index = TopicIndex()
    for topic_filter in subscribed:
        index.add(topic_filter)
    found = index.match(topic)
    assert sorted(found) == sorted(f for f in subscribed if matches(topic, f))


@given(st.lists(filters, max_size=12), st.lists(filters, max_size=12), topics)
def test_discard_forgets_only_what_was_removed(kept: list[str], dropped: list[str], topic: str) -> None:
    """After removing some filters the index behaves as if only the others had been added."""
    index = TopicIndex()
    for topic_filter in kept + dropped:
        index.add(topic_filter)
    for topic_filter in dropped:
        if topic_filter not in kept:
            index.discard(topic_filter)
    remaining = set(kept)
    assert len(index) == len(remaining)
    assert sorted(index.match(topic)) == sorted(f for f in remaining if matches(topic, f))


def test_parent_level_and_dollar_rules() -> None:
    """`a/#` matches `a`; wildcards at the first level never match `$` topics."""
    index = TopicIndex()
    for topic_filter in ("a/#", "#", "+/x", "$SYS/#"):
        index.add(topic_filter)
    assert sorted(index.match("a")) == ["#", "a/#"]
    assert index.match("$SYS/x") == ["$SYS/#"]
    index.discard("$SYS/#")
    assert index.match("$SYS/x") == []
