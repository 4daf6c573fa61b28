"""The live feed: coalescing per vehicle, batching per tick, fleet scoping and bounded client buffers."""

import asyncio
import json

import pytest

from console import FleetIndex, LiveFeed, TooManyClients
from twin import PATH_SEP, ReportedEntry, TwinState, TwinUpdate, UpdateKind


def twin(vid: str, fleet: str = "acme", **reported: float) -> TwinState:
    state = TwinState(vehicle_id=vid, created_at=0.0, updated_at=0.0, fleet=fleet)
    for key, value in reported.items():
        state.reported[key.replace("__", PATH_SEP)] = ReportedEntry(value, 1.0)
    state.connection.connected = True
    return state


def update(state: TwinState) -> TwinUpdate:
    return TwinUpdate(UpdateKind.TELEMETRY, state.vehicle_id, state, 1.0)


def feed(**kw: int) -> LiveFeed:
    index = FleetIndex()
    index.ready.set()
    return LiveFeed(index, interval_s=1.0, **kw)


def batches(client) -> list[dict]:
    return [json.loads(b) for b in client.pending]


def alert(vid: str, fleet: str, state: str = "active", alert_id: str = "a1") -> bytes:
    return json.dumps(
        {"id": alert_id, "vehicle_id": vid, "fleet": fleet, "severity": "critical", "state": state, "event": "raised"}
    ).encode()


def test_many_updates_of_one_vehicle_within_a_tick_are_one_row_with_the_latest_values() -> None:
    """Ten reports of one vehicle between two ticks reach a client as one row holding the last one."""
    live = feed()
    client = live.connect(None, alerts=True, commands=True)
    for speed in range(10):
        live.twin_updated([update(twin("v1", speed=float(speed), gps__lat=1.0, gps__lon=2.0))])
    live.tick()
    [batch] = batches(client)
    assert batch["vehicles"]["id"] == ["v1"]
    assert batch["vehicles"]["speed"] == [9.0]
    assert batch["vehicles"]["lat"] == [1.0]
    assert batch["vehicles"]["state"] == ["moving"]


def test_a_tick_without_changes_sends_nothing_and_the_next_change_sends_again() -> None:
    """No batch for an idle tick (positive control: a change in the next tick is sent)."""
    live = feed()
    client = live.connect(None, alerts=True, commands=True)
    live.tick()
    assert batches(client) == []
    live.twin_updated([update(twin("v1", speed=1.0))])
    live.tick()
    assert len(batches(client)) == 1


def test_a_client_sees_only_its_fleets_rows_alerts_and_commands() -> None:
    """A client of fleet acme gets acme's rows, alerts and command events, nothing of globex."""
    live = feed()
    acme = live.connect(frozenset({"acme"}), alerts=True, commands=True)
    everyone = live.connect(None, alerts=True, commands=True)
    live.twin_updated([update(twin("a1", "acme")), update(twin("g1", "globex"))])
    live.tick()
    live.hub_message("alerts/globex/critical/r/g1", alert("g1", "globex"))
    live.hub_message("alerts/acme/critical/r/a1", alert("a1", "acme", alert_id="a2"))
    live.hub_message("events/commands/g1/c1", json.dumps({"id": "c1", "vehicle_id": "g1", "state": "sent"}).encode())
    live.hub_message("events/commands/a1/c2", json.dumps({"id": "c2", "vehicle_id": "a1", "state": "sent"}).encode())
    live.tick()
    first, second = batches(acme)
    assert first["vehicles"]["id"] == ["a1"]
    assert [a["vehicle_id"] for a in second["alerts"]] == ["a1"]
    assert [c["id"] for c in second["commands"]] == ["c2"]
    assert second["vehicles"]["id"] == ["a1"]  # its row changed: now in alarm
    assert second["vehicles"]["state"] == ["alarm"]
    all_first, all_second = batches(everyone)
    assert all_first["vehicles"]["id"] == ["a1", "g1"]
    assert {a["vehicle_id"] for a in all_second["alerts"]} == {"a1", "g1"}


def test_a_client_without_alert_permission_gets_no_alert_events() -> None:
    """Alert and command events go only to clients whose role may read them."""
    live = feed()
    live.twin_updated([update(twin("a1", "acme"))])
    live.tick()
    blind = live.connect(None, alerts=False, commands=False)
    seeing = live.connect(None, alerts=True, commands=False)
    live.hub_message("alerts/acme/critical/r/a1", alert("a1", "acme"))
    live.tick()
    [for_blind] = batches(blind)
    [for_seeing] = batches(seeing)
    assert for_blind["alerts"] == []
    assert len(for_seeing["alerts"]) == 1


def test_a_client_that_falls_behind_is_dropped_and_counted_not_grown() -> None:
    """A client whose buffer holds `client_buffer` batches is dropped at the next; others carry on."""
    live = feed(client_buffer=3)
    slow = live.connect(None, alerts=True, commands=True)
    fast = live.connect(None, alerts=True, commands=True)
    for i in range(5):
        live.twin_updated([update(twin("v1", speed=float(i)))])
        live.tick()
        fast.pending.clear()
        assert len(slow.pending) <= 3
    assert slow.dropped
    assert slow not in live.clients
    assert fast in live.clients
    assert not fast.dropped
    assert live.dropped_total == 1


async def test_a_dropped_client_stream_ends() -> None:
    """The stream of a dropped client finishes, so its connection closes and the browser reconnects."""
    live = feed(client_buffer=1)
    client = live.connect(None, alerts=True, commands=True)

    async def consume() -> list[bytes | None]:
        return [b async for b in client.batches(heartbeat_s=10)]

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0)
    for i in range(3):
        live.twin_updated([update(twin("v1", speed=float(i)))])
        live.tick()
    got = await asyncio.wait_for(task, 2)
    assert client.dropped
    assert len(got) <= 1


async def test_an_idle_stream_yields_heartbeats() -> None:
    """Without batches the stream yields None every heartbeat (the endpoint writes a comment line)."""
    live = feed()
    client = live.connect(None, alerts=True, commands=True)
    stream = client.batches(heartbeat_s=0.05)
    assert await asyncio.wait_for(anext(stream), 1) is None
    live.twin_updated([update(twin("v1"))])
    live.tick()
    assert isinstance(await asyncio.wait_for(anext(stream), 1), bytes)
    live.disconnect(client)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(stream), 1)


def test_clients_beyond_the_limit_are_refused() -> None:
    """live_max_clients streams at once; the next is refused until one disconnects."""
    live = feed(max_clients=2)
    first = live.connect(None, alerts=True, commands=True)
    live.connect(None, alerts=True, commands=True)
    with pytest.raises(TooManyClients):
        live.connect(None, alerts=True, commands=True)
    live.disconnect(first)
    live.connect(None, alerts=True, commands=True)


def test_alert_events_mark_and_clear_the_vehicle_alarm_in_the_index() -> None:
    """An open alert puts the vehicle in alarm; its clearing takes it out."""
    live = feed()
    live.twin_updated([update(twin("v1", "acme", speed=0.0))])
    live.tick()
    live.hub_message("alerts/acme/critical/r/v1", alert("v1", "acme"))
    live.refresh_index()
    assert live.index.rows["v1"].state.value == "alarm"
    live.hub_message("alerts/acme/critical/r/v1", alert("v1", "acme", state="cleared"))
    live.refresh_index()
    assert live.index.rows["v1"].state.value == "parked"


def test_an_alert_for_a_vehicle_not_yet_indexed_is_kept_for_its_row() -> None:
    """With nobody watching, rows are built lazily; an alert that arrives first still marks the row."""
    live = feed()
    live.twin_updated([update(twin("v2", "acme", speed=0.0))])
    live.tick()
    assert "v2" not in live.index.rows
    live.hub_message("alerts/acme/critical/r/v2", alert("v2", "acme", alert_id="a9"))
    live.refresh_index()
    assert live.index.rows["v2"].state.value == "alarm"
    assert live.index.rows["v2"].alerts == {"a9": "critical"}


async def test_the_tee_publishes_through_the_inner_publisher_even_when_the_feed_fails() -> None:
    """The live view never stands between an event and the broker."""
    sent: list[str] = []

    class Inner:
        async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
            sent.append(topic)

    live = feed()
    tee = live.tee(Inner())
    await tee.publish("alerts/acme/critical/r/v1", b"not json")
    await tee.publish("alerts/acme/critical/r/v1", alert("v1", "acme"))
    assert sent == ["alerts/acme/critical/r/v1", "alerts/acme/critical/r/v1"]


def test_a_vehicle_reporting_the_same_values_is_resent_only_when_last_seen_moved_enough() -> None:
    """A parked vehicle's identical reports are not re-sent every tick, but its last-seen time is, every 30 s."""
    live = feed()
    client = live.connect(None, alerts=True, commands=True)
    state = twin("v1", speed=0.0, gps__lat=1.0, gps__lon=2.0)
    sent = []
    for second in range(0, 70, 5):
        state.connection.last_seen = 1000.0 + second
        live.twin_updated([update(state)])
        live.tick()
        sent += [b["vehicles"]["last_seen"][0] for b in batches(client)]
        client.pending.clear()
    assert sent == [1000.0, 1030.0, 1060.0]
    state.reported["speed"] = ReportedEntry(12.0, 2.0)
    live.twin_updated([update(state)])
    live.tick()
    assert batches(client)[0]["vehicles"]["speed"] == [12.0]


def test_reloading_alerts_replaces_the_open_set_and_resends_the_rows_it_changed() -> None:
    """After missed alert events: rows whose open alerts differ from the re-read set are re-sent, with a resync."""
    live = feed()
    live.twin_updated([update(twin("v1", speed=1.0)), update(twin("v2", speed=1.0)), update(twin("v3", speed=1.0))])
    live.hub_message("alerts/acme/critical/r/v1", alert("v1", "acme", alert_id="gone"))
    live.hub_message("alerts/acme/critical/r/v3", alert("v3", "acme", alert_id="kept"))
    live.refresh_index()
    client = live.connect(None, alerts=True, commands=True)
    live.tick()
    client.pending.clear()
    # "gone" was cleared and "new" raised while events were missed; v3's alert is unchanged.
    live.reload_alerts([("new", "v2", "major"), ("kept", "v3", "critical")])
    live.tick()
    [batch] = batches(client)
    assert batch["resync"] is True
    assert batch["vehicles"]["id"] == ["v1", "v2"]
    assert batch["vehicles"]["alerts"] == [0, 1]
    assert batch["vehicles"]["state"] == ["parked", "alarm"]


def test_a_deleted_twin_leaves_the_index_and_the_next_batch_names_it_to_clients_of_its_fleet() -> None:
    """Removed rows go to clients that saw the fleet; an unknown id is ignored; a pending update is dropped."""
    live = feed()
    live.twin_updated([update(twin("v1", speed=1.0)), update(twin("v2", "other", speed=1.0))])
    live.refresh_index()
    everyone = live.connect(None, alerts=True, commands=True)
    acme = live.connect(frozenset({"acme"}), alerts=True, commands=True)
    other = live.connect(frozenset({"other"}), alerts=True, commands=True)
    # An update of v1 is still waiting for the tick when v1 is deleted: it must not bring v1 back.
    live.twin_updated([update(twin("v1", speed=5.0)), update(twin("v3", speed=1.0))])
    live.twins_removed(["v1", "never-seen"])
    assert live.vehicle_ids() == {"v2", "v3"}
    live.tick()
    [batch] = batches(everyone)
    assert batch["removed"] == ["v1"]
    assert batch["vehicles"]["id"] == ["v3"]  # the positive control: the same tick sent rows
    assert batches(acme)[0]["removed"] == ["v1"]
    assert batches(other) == []
    assert "v1" not in live.index.rows
    assert sorted(live.index.columns(None).id) == ["v2", "v3"]
