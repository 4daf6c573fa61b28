"""How the PostgreSQL broker store regroups a batch: never across an order that matters."""

from hypothesis import given
from hypothesis import strategies as st

from broker.stores import (
    AckInflight,
    ClearRetained,
    Dequeue,
    DropSession,
    Enqueue,
    Inflight,
    InflightState,
    Message,
    PutIncoming,
    PutInflight,
    PutSession,
    Queued,
    ReleaseIncoming,
    Retain,
    SessionRecord,
    Subscribe,
    Subscription,
    Unsubscribe,
)
from broker.stores.postgres import _key, _stages

MESSAGE = Message("t", b"x", 1)
clients = st.sampled_from(["a", "b"])
small = st.integers(1, 3)
changes = st.one_of(
    st.builds(lambda c: PutSession(SessionRecord(c, 5, 60)), clients),
    st.builds(DropSession, clients),
    st.builds(lambda c, f: Subscribe(c, Subscription(f, 1)), clients, st.sampled_from(["x", "y"])),
    st.builds(Unsubscribe, clients, st.sampled_from(["x", "y"])),
    st.builds(lambda c, s: Enqueue(c, Queued(s, MESSAGE)), clients, small),
    st.builds(Dequeue, clients, small),
    st.builds(lambda c, p: PutInflight(c, Inflight(1, p, InflightState.PUBLISH_SENT, MESSAGE)), clients, small),
    st.builds(AckInflight, clients, small),
    st.builds(PutIncoming, clients, small),
    st.builds(ReleaseIncoming, clients, small),
    st.builds(lambda t: Retain(Message(t, b"1", 1)), st.sampled_from(["r1", "r2"])),
    st.builds(ClearRetained, st.sampled_from(["r1", "r2"])),
)


def _must_follow(first, then) -> bool:
    """Whether `then` must be applied after `first` (it came later in the batch)."""
    (s1, row1), (s2, row2) = _key(first), _key(then)
    if s1 != s2:
        return False
    if row1 is None or row2 is None:
        return True
    return row1 == row2


@given(st.lists(changes, max_size=40))
def test_stages_keep_every_order_that_matters(batch) -> None:
    """A later change to the same row, or to a session one of them changes whole, runs after the earlier one."""
    stages = _stages(batch)
    place = {}
    for number, stage in enumerate(stages):
        for kind, run in stage.items():
            assert all(type(c) is kind for c in run)
            for position, change in enumerate(run):
                place[id(change)] = (number, list(stage).index(kind), position)
    assert sorted(place) == sorted(id(c) for c in batch)
    for i, first in enumerate(batch):
        for then in batch[i + 1 :]:
            if _must_follow(first, then):
                # Later stage; or, for the same kind in one stage, later in that kind's run (one statement, in order).
                if type(first) is type(then) and _key(first)[1] is not None:
                    assert place[id(first)][0] <= place[id(then)][0]
                    if place[id(first)][0] == place[id(then)][0]:
                        assert place[id(first)][2] < place[id(then)][2]
                else:
                    assert place[id(first)][0] < place[id(then)][0]


def test_a_fan_out_takes_two_stages() -> None:
    """Queue, send, in flight and acknowledge of many packets to many sessions: two stages, four statements."""
    batch = []
    for n in range(1, 301):
        client = f"c{n % 100}"
        batch += [
            Enqueue(client, Queued(n, MESSAGE)),
            Dequeue(client, n),
            PutInflight(client, Inflight(n, n, InflightState.PUBLISH_SENT, MESSAGE)),
            AckInflight(client, n),
        ]
    stages = _stages(batch)
    assert [sorted(k.__name__ for k in stage) for stage in stages] == [
        ["Enqueue", "PutInflight"],
        ["AckInflight", "Dequeue"],
    ]
