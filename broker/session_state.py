"""A session's connection state without a `transitions.Machine` per session.

amqtt gives every `Session` its own `transitions.Machine` (three states, six
transitions): about 16 KiB and a millisecond of CPU per connection, most of the
memory a connected vehicle cost the hub and a large share of accepting a reconnect
storm. `LightState` answers the same calls amqtt makes on `session.transitions`
(`state`, `connect()`, `disconnect()`, `is_connected()`, ...) with the same
outcomes, including `MachineError` for a connect while connected, which amqtt's
take-over path relies on.

amqtt builds sessions inside its own code with no factory to override, so
`install()` replaces `Session._init_states` for the process; the hub calls it
before its broker starts.
"""

from __future__ import annotations

from typing import Any, Final

from amqtt.session import Session
from transitions import MachineError

NEW: Final = "new"
CONNECTED: Final = "connected"
DISCONNECTED: Final = "disconnected"

# amqtt's own, kept so tests can compare the two.
AMQTT_INIT_STATES: Final = Session._init_states


class LightState:
    """`session.transitions` for one session: new -> connected <-> disconnected."""

    __slots__ = ("_session", "state")

    def __init__(self, session: Any) -> None:
        self._session = session
        self.state = NEW

    def connect(self) -> bool:
        if self.state == CONNECTED:
            msg = f"Can't trigger event connect from state {CONNECTED}!"
            raise MachineError(msg)
        self.state = CONNECTED
        self._session._on_enter_connected()
        return True

    def disconnect(self) -> bool:
        # Allowed from every state, as in amqtt (new, connected and disconnected all lead here).
        self.state = DISCONNECTED
        self._session._on_enter_disconnected()
        return True

    def is_new(self) -> bool:
        return self.state == NEW

    def is_connected(self) -> bool:
        return self.state == CONNECTED

    def is_disconnected(self) -> bool:
        return self.state == DISCONNECTED


def _init_states(session: Any) -> None:
    session.transitions = LightState(session)


def install() -> None:
    """Make every amqtt `Session` created from now on use `LightState` (idempotent)."""
    Session._init_states = _init_states
