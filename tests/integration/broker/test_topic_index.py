"""The topic index routes exactly like amqtt's filter matching, only faster."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from amqtt.broker import Broker
from hypothesis import given
from hypothesis import strategies as st

from broker.topic_index import TopicIndex

_AMQTT = SimpleNamespace(logger=logging.getLogger("test.topic_index"))


def amqtt_matches(topic: str, topic_filter: str) -> bool:
    return bool(Broker._matches(_AMQTT, topic, topic_filter))


_topic_level = st.sampled_from(["a", "b", "", "$SYS"])
topics = st.lists(_topic_level, min_size=1, max_size=4).map("/".join)
_filter_level = st.sampled_from(["a", "b", "", "+", "$SYS"])
filters = st.tuples(st.lists(_filter_level, min_size=1, max_size=4), st.booleans()).map(
    lambda parts: "/".join([*parts[0], "#"] if parts[1] else parts[0])
) | st.just("#")


@given(st.sets(filters, max_size=12), topics)
def test_match_agrees_with_amqtt(subscribed: set[str], topic: str) -> None:
    """For any valid filters and topic, the index finds exactly the filters amqtt would."""
    index = TopicIndex()
    for topic_filter in subscribed:
        index.add(topic_filter)
    found = index.match(topic)
    assert sorted(found) == sorted(f for f in subscribed if amqtt_matches(topic, f))


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
    assert sorted(index.match(topic)) == sorted(f for f in remaining if amqtt_matches(topic, f))


def test_parent_level_and_dollar_rules() -> None:
    """`a/#` matches `a`; wildcards at the first level never match `$` topics."""
    index = TopicIndex()
    for topic_filter in ("a/#", "#", "+/x", "$SYS/#"):
        index.add(topic_filter)
    assert sorted(index.match("a")) == ["#", "a/#"]
    assert index.match("$SYS/x") == ["$SYS/#"]
    index.discard("$SYS/#")
    assert index.match("$SYS/x") == []
