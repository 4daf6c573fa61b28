"""Topic names and filters as the specification has them (4.7): what is valid, what matches."""

from __future__ import annotations

from typing import Final

SHARE_PREFIX: Final = "$share/"


def valid_topic_name(topic: str) -> bool:
    """A PUBLISH topic: non-empty, no wildcards (MQTT-3.3.2-2, 4.7.3-1); the codec already refused NUL."""
    return bool(topic) and "+" not in topic and "#" not in topic


def valid_filter(topic_filter: str) -> bool:
    """Non-empty; `#` only last and alone in its level; `+` alone in its level (4.7.1)."""
    if not topic_filter:
        return False
    levels = topic_filter.split("/")
    for n, level in enumerate(levels):
        if "#" in level and (level != "#" or n != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def split_shared(topic_filter: str) -> tuple[str, str] | None:
    """(group, filter) of a shared subscription `$share/{group}/{filter}`; None if not shared.

    A malformed one (empty group, wildcard in the group, no filter) gives ("", "").
    """
    if not topic_filter.startswith(SHARE_PREFIX):
        return None
    group, sep, inner = topic_filter[len(SHARE_PREFIX) :].partition("/")
    if not sep or not group or "+" in group or "#" in group or not valid_filter(inner):
        return ("", "")
    return group, inner


def matches(topic: str, topic_filter: str) -> bool:
    """Whether `topic_filter` matches `topic`; leading wildcards skip `$` topics (4.7.2-1)."""
    t_levels = topic.split("/")
    f_levels = topic_filter.split("/")
    if topic.startswith("$") and f_levels[0] in ("+", "#"):
        return False
    for n, level in enumerate(f_levels):
        if level == "#":
            return True
        if n >= len(t_levels):
            return False
        if level != "+" and level != t_levels[n]:
            return False
    return len(t_levels) == len(f_levels)
