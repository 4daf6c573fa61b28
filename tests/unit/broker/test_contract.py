"""The contract table the manual renders says what the broker's topic parser does."""

from broker import CONTRACT, refusal_reasons
from broker.topics import Refusal, parse
from twin import MessageKind

_KINDS = {
    "vehicles/{vid}/telemetry": MessageKind.TELEMETRY,
    "vehicles/{vid}/twin/get": MessageKind.TWIN_GET,
    "vehicles/{vid}/twin/rejected": MessageKind.TWIN_REJECTED,
    "vehicles/{vid}/commands/{command_id}/result": MessageKind.COMMAND_RESULT,
}


def _concrete(pattern: str) -> str:
    return pattern.replace("{vid}", "veh-0001").replace("{command_id}", "c-1")


def test_every_uplink_row_parses_to_its_kind_and_every_uplink_kind_has_a_row() -> None:
    uplink = [t.pattern for t in CONTRACT if t.direction == "vehicle → hub"]
    assert sorted(uplink) == sorted(_KINDS)
    for pattern in uplink:
        parsed = parse(_concrete(pattern))
        assert parsed is not None
        assert (parsed.vehicle_id, parsed.kind, parsed.refusal) == ("veh-0001", _KINDS[pattern], None)


def test_a_client_publishing_on_a_downlink_row_is_refused() -> None:
    downlink = [t.pattern for t in CONTRACT if t.direction == "hub → vehicle"]
    assert len(downlink) == 4
    for pattern in downlink:
        parsed = parse(_concrete(pattern))
        assert parsed is not None
        assert parsed.refusal is Refusal.TOPIC_NOT_ALLOWED, pattern


def test_a_topic_outside_the_contract_is_unknown_and_events_are_plain_routing() -> None:
    unknown = parse("vehicles/veh-0001/telemetry/extra")
    assert unknown is not None
    assert unknown.refusal is Refusal.UNKNOWN_TOPIC
    assert parse(_concrete("events/commands/{vid}/{command_id}")) is None


def test_refusal_reasons_are_the_brokers() -> None:
    assert refusal_reasons() == [r.value for r in Refusal]
    assert "not_authorized" in refusal_reasons()
