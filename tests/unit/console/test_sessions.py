"""Console sessions: random ids stored as digests, lifetime, idle timeout and a bounded count."""

from console import MemorySessions, csrf_matches
from security import Principal, Role


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def principal(name: str = "ann") -> Principal:
    return Principal.user(name, Role.VIEWER, ("acme",))


def test_a_session_is_found_by_its_id_and_the_store_keeps_only_a_digest() -> None:
    """The id opens the session; the id itself is not what the store holds."""
    sessions = MemorySessions(ttl_s=100, idle_s=50, max_sessions=10)
    sid, session = sessions.open(principal())
    assert sessions.get(sid) is session
    assert sid not in sessions._sessions
    assert sessions.get(sid + "x") is None


def test_sessions_end_after_their_lifetime_and_when_idle() -> None:
    """Idle longer than idle_s, or older than ttl_s: the session is gone."""
    clock = Clock()
    sessions = MemorySessions(ttl_s=100, idle_s=30, max_sessions=10, clock=clock)
    sid, _ = sessions.open(principal())
    for _ in range(3):
        clock.now += 25
        assert sessions.get(sid) is not None
    clock.now += 31
    assert sessions.get(sid) is None
    busy, _ = sessions.open(principal())
    for _ in range(4):
        clock.now += 25
        sessions.get(busy)
    clock.now += 25
    assert sessions.get(busy) is None


def test_the_least_recently_used_session_goes_beyond_the_limit() -> None:
    """max_sessions bounds memory; the oldest unused login ends first."""
    sessions = MemorySessions(ttl_s=100, idle_s=100, max_sessions=2)
    a, _ = sessions.open(principal("a"))
    b, _ = sessions.open(principal("b"))
    sessions.get(a)
    c, _ = sessions.open(principal("c"))
    assert sessions.get(b) is None
    assert sessions.get(a) is not None
    assert sessions.get(c) is not None


def test_csrf_token_must_match_exactly() -> None:
    """Only the session's own CSRF token passes."""
    sessions = MemorySessions(ttl_s=100, idle_s=100, max_sessions=2)
    _, session = sessions.open(principal())
    assert csrf_matches(session, session.csrf)
    assert not csrf_matches(session, None)
    assert not csrf_matches(session, session.csrf[:-1])


def test_close_where_ends_matching_sessions() -> None:
    """Sessions of one user can be ended together."""
    sessions = MemorySessions(ttl_s=100, idle_s=100, max_sessions=10)
    a, _ = sessions.open(principal("a"))
    b, _ = sessions.open(principal("b"))
    assert sessions.close_where(lambda s: s.principal.name == "a") == 1
    assert sessions.get(a) is None
    assert sessions.get(b) is not None
