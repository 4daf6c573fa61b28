"""Who gets a message: subscriptions by filter (a trie of filters), shared groups and retained messages.

Routing never awaits: a message is put on every matching session's queue at once, so a
hub-originated send needs no task and subscriptions cannot change under it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from broker.codec import Subscription
from broker.filters import matches
from broker.session import Message, Outgoing, Session
from broker.topic_index import TopicIndex

# A subscription as the router holds it: the filter's options and its MQTT 5 subscription id.
Granted = tuple[Subscription, int | None]


@dataclass(slots=True)
class _Group:
    """One `$share/{group}/{filter}`: each message goes to one member, in turn."""

    members: dict[str, Granted] = field(default_factory=dict)
    turn: int = 0


@dataclass(slots=True)
class _Subscribers:
    direct: dict[str, Granted] = field(default_factory=dict)
    groups: dict[str, _Group] = field(default_factory=dict)

    def empty(self) -> bool:
        return not self.direct and not self.groups


class Router:
    def __init__(self) -> None:
        self._index = TopicIndex()
        self._by_filter: dict[str, _Subscribers] = {}
        self.retained: dict[str, Message] = {}
        self.retained_bytes = 0
        self._seq = itertools.count(1)

    def subscribe(self, client_id: str, subscription: Granted, inner: str, group: str | None) -> None:
        subscribers = self._by_filter.get(inner)
        if subscribers is None:
            subscribers = self._by_filter[inner] = _Subscribers()
            self._index.add(inner)
        if group is None:
            subscribers.direct[client_id] = subscription
        else:
            subscribers.groups.setdefault(group, _Group()).members[client_id] = subscription

    def unsubscribe(self, client_id: str, inner: str, group: str | None) -> bool:
        subscribers = self._by_filter.get(inner)
        if subscribers is None:
            return False
        if group is None:
            found = subscribers.direct.pop(client_id, None) is not None
        else:
            shared = subscribers.groups.get(group)
            found = shared is not None and shared.members.pop(client_id, None) is not None
            if shared is not None and not shared.members:
                del subscribers.groups[group]
        if subscribers.empty():
            del self._by_filter[inner]
            self._index.discard(inner)
        return found

    def targets(self, topic: str, sessions: dict[str, Session]) -> dict[str, list[Granted]]:
        """The subscriptions of each client id that `topic` reaches (one member per shared group)."""
        found: dict[str, list[Granted]] = {}
        for topic_filter in self._index.match(topic):
            subscribers = self._by_filter[topic_filter]
            for client_id, subscription in subscribers.direct.items():
                found.setdefault(client_id, []).append(subscription)
            for shared in subscribers.groups.values():
                members = list(shared.members.items())
                # Prefer a connected member; an absent one only when none is connected.
                online = [m for m in members if (s := sessions.get(m[0])) is not None and s.connected] or members
                client_id, chosen = online[shared.turn % len(online)]
                shared.turn += 1
                found.setdefault(client_id, []).append(chosen)
        return found

    def retain(self, message: Message, max_messages: int = 0, max_bytes: int = 0) -> bool:
        """Keep `message` as its topic's retained message; an empty payload deletes it (MQTT-3.3.1-10).

        False, and nothing kept, when a new topic would take the retained messages over
        `max_messages` or `max_bytes` (0: no bound); replacing or deleting always works.
        """
        previous = self.retained.get(message.topic)
        if not message.payload:
            if previous is not None:
                del self.retained[message.topic]
                self.retained_bytes -= previous.size
            return True
        grows = message.size - (previous.size if previous is not None else 0)
        if previous is None and max_messages and len(self.retained) >= max_messages:
            return False
        if grows > 0 and max_bytes and self.retained_bytes + grows > max_bytes:
            return False
        self.retained[message.topic] = message
        self.retained_bytes += grows
        return True

    def retained_for(self, topic_filter: str) -> list[Message]:
        return [m for topic, m in self.retained.items() if matches(topic, topic_filter)]

    def next_seq(self) -> int:
        return next(self._seq)

    def continue_after(self, last_seq: int) -> None:
        """Number deliveries above `last_seq` (the highest the broker store holds)."""
        self._seq = itertools.count(last_seq + 1)

    def outgoing(self, message: Message, granted: list[Granted]) -> Outgoing:
        """One delivery for several matching subscriptions: the highest QoS, all ids (MQTT 5 3.3.4).

        RETAIN stays set only for a retain-as-published subscription (MQTT-3.3.1-12).
        """
        qos = min(message.qos, max(s.qos for s, _ in granted))
        retain = message.retain and any(s.retain_as_published for s, _ in granted)
        sub_ids = tuple(i for _, i in granted if i)
        return Outgoing(message, qos, retain, sub_ids, self.next_seq())
