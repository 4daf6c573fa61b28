"""The light session state behaves as amqtt's `transitions.Machine` does for every call amqtt makes."""

import itertools

import pytest
from amqtt.session import Session
from transitions import MachineError

from broker import session_state


def _outcome(session: Session, triggers: tuple[str, ...]) -> list[tuple[str, str, bool, bool]]:
    steps = []
    for trigger in triggers:
        try:
            getattr(session.transitions, trigger)()
            result = "ok"
        except MachineError:
            result = "refused"
        steps.append(
            (
                result,
                session.transitions.state,
                session.last_connect_time is not None,
                session.last_disconnect_time is not None,
            )
        )
    return steps


@pytest.mark.parametrize("triggers", list(itertools.product(("connect", "disconnect"), repeat=4)))
def test_same_states_callbacks_and_refusals_as_amqtt(triggers: tuple[str, ...]) -> None:
    """Each sequence of connect/disconnect ends in the same states, timestamps and refusals."""
    session_state.install()
    light = Session()
    reference = Session()
    session_state.AMQTT_INIT_STATES(reference)
    assert isinstance(light.transitions, session_state.LightState)
    assert _outcome(light, triggers) == _outcome(reference, triggers)


def test_state_queries() -> None:
    """The is_* queries follow the state."""
    session_state.install()
    session = Session()
    assert session.transitions.is_new()
    session.transitions.connect()
    assert session.transitions.is_connected()
    session.transitions.disconnect()
    assert session.transitions.is_disconnected()
    assert not session.transitions.is_connected()
