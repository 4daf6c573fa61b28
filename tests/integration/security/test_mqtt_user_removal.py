"""Removing a user ends what it had on the broker: its live connections and its stored persistent sessions."""

import asyncio

from security import CLI, Role
from tests.helpers import eventually


async def test_removed_user_is_disconnected_and_its_session_forgotten(hub, clients) -> None:
    """A removed user's connection closes; re-created with fewer fleets, it resumes none of the old subscriptions."""
    await hub.security.add_user("ops", Role.ADMIN, ("*",), actor=CLI, password="pw-ops-1")
    bystander_user = "watch"
    await hub.security.add_user(bystander_user, Role.ADMIN, ("*",), actor=CLI, password="pw-watch-1")
    ops = clients("ops-desk", username="ops", password="pw-ops-1", clean_session=False)
    assert await ops.connect() == 0
    assert await ops.subscribe("alerts/#") == 1
    bystander = clients("watch-desk", username=bystander_user, password="pw-watch-1")
    assert await bystander.connect() == 0

    await hub.security.remove_user("ops", actor=CLI)

    assert await ops.wait_disconnected()
    await asyncio.sleep(0.2)
    assert not bystander.disconnected.is_set(), "another user's connection was closed too"

    async def session_gone() -> bool:
        return all(s.client_id != "ops-desk" for s in hub.broker.sessions())

    await eventually(session_gone)
    await hub.security.add_user("ops", Role.MAINTENANCE, ("acme",), actor=CLI, password="pw-ops-2")
    again = clients("ops-desk", username="ops", password="pw-ops-2", clean_session=False)
    assert await again.connect() == 0
    await hub.broker.publish("alerts/globex/critical/hot/veh-z", b"{}")
    assert await bystander.subscribe("alerts/#") == 1
    await hub.broker.publish("alerts/globex/critical/hot/veh-y", b"{}")
    topic, _ = await bystander.next_message()
    assert topic == "alerts/globex/critical/hot/veh-y"
    assert again.messages.empty(), "the re-created user resumed the old session's subscription"
