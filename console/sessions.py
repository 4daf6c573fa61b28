"""Console logins: server-side sessions behind an HttpOnly, SameSite=Strict cookie.

The browser never holds an API token: it logs in once (user name and password, or an
API token) and gets a random session id in a cookie that scripts cannot read, plus a
CSRF token it must echo in `X-CSRF-Token` on every state-changing request. The store
keeps only a SHA-256 digest of each session id. Every request re-checks the user (and
the token a session was opened with), so deleting a user, changing a role or revoking
a token takes effect at once.

Sessions live in the hub's memory (bounded, least recently used first out): a restart
logs every console user out. Several API nodes behind one name need sticky sessions or
a shared `SessionStore` implementation.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from security import Principal

COOKIE = "fleethub_session"
CSRF_HEADER = "x-csrf-token"


@dataclass(slots=True)
class Session:
    # The principal as it logged in; re-checked against the security store on every use.
    principal: Principal
    csrf: str
    created_at: float
    last_used: float


class SessionStore(Protocol):
    def open(self, principal: Principal) -> tuple[str, Session]: ...

    def get(self, session_id: str) -> Session | None: ...

    def close(self, session_id: str) -> None: ...

    def close_where(self, which: Callable[[Session], bool]) -> int: ...


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class MemorySessions:
    def __init__(
        self,
        *,
        ttl_s: float,
        idle_s: float,
        max_sessions: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl_s = ttl_s
        self.idle_s = idle_s
        self.max_sessions = max_sessions
        self.clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def open(self, principal: Principal) -> tuple[str, Session]:
        """A new session; returns the id for the cookie (shown once, stored as a digest)."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(principal, secrets.token_urlsafe(32), now, now)
        self._sessions[_digest(session_id)] = session
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        key = _digest(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self.clock()
        if now - session.created_at > self.ttl_s or now - session.last_used > self.idle_s:
            del self._sessions[key]
            return None
        session.last_used = now
        self._sessions.move_to_end(key)
        return session

    def close(self, session_id: str) -> None:
        self._sessions.pop(_digest(session_id), None)

    def close_where(self, which: Callable[[Session], bool]) -> int:
        doomed = [key for key, session in self._sessions.items() if which(session)]
        for key in doomed:
            del self._sessions[key]
        return len(doomed)

    def __len__(self) -> int:
        return len(self._sessions)


def csrf_matches(session: Session, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(session.csrf.encode(), sent.encode())
