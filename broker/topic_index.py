"""Which subscription filters match a topic, without looking at every filter.

amqtt tests each published topic against every filter of every client, so routing
cost grows with the fleet (each vehicle subscribes to its own topics). A trie over
topic levels visits only the branches a topic can match.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    # The filter that ends at this node, if any.
    topic_filter: str | None = None


class TopicIndex:
    """A set of MQTT 3.1.1 topic filters, queried by topic name."""

    def __init__(self) -> None:
        self._root = _Node()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, topic_filter: str) -> None:
        node = self._root
        for level in topic_filter.split("/"):
            node = node.children.setdefault(level, _Node())
        if node.topic_filter is None:
            node.topic_filter = topic_filter
            self._size += 1

    def discard(self, topic_filter: str) -> None:
        path = [self._root]
        for level in topic_filter.split("/"):
            child = path[-1].children.get(level)
            if child is None:
                return
            path.append(child)
        if path[-1].topic_filter is None:
            return
        path[-1].topic_filter = None
        self._size -= 1
        # Prune the branch back to the last node still in use.
        for level, parent, node in zip(
            reversed(topic_filter.split("/")), reversed(path[:-1]), reversed(path[1:]), strict=True
        ):
            if node.children or node.topic_filter is not None:
                break
            del parent.children[level]

    def match(self, topic: str) -> list[str]:
        """The filters matching `topic`; `+` and `#` at the first level skip `$` topics (4.7.2-1)."""
        levels = topic.split("/")
        found: list[str] = []
        self._walk(self._root, levels, 0, topic.startswith("$"), found)
        return found

    def _walk(self, node: _Node, levels: list[str], depth: int, dollar: bool, found: list[str]) -> None:
        wildcards_allowed = not (dollar and depth == 0)
        # `a/#` also matches `a` itself (4.7.1-2).
        everything = node.children.get("#") if wildcards_allowed else None
        if everything is not None and everything.topic_filter is not None:
            found.append(everything.topic_filter)
        if depth == len(levels):
            if node.topic_filter is not None:
                found.append(node.topic_filter)
            return
        exact = node.children.get(levels[depth])
        if exact is not None:
            self._walk(exact, levels, depth + 1, dollar, found)
        single = node.children.get("+") if wildcards_allowed else None
        if single is not None:
            self._walk(single, levels, depth + 1, dollar, found)
