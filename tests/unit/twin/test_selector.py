import msgspec
import pytest

from twin import TwinState, VehicleSelector


def twin(vid: str, fleet: str = "default", **tags: object) -> TwinState:
    return TwinState(vehicle_id=vid, created_at=0, updated_at=0, fleet=fleet, tags=dict(tags))


@pytest.mark.parametrize(
    ("selector", "admitted"),
    [
        (VehicleSelector(), {"a", "b", "c", "d"}),
        (VehicleSelector(fleet="acme"), {"a", "b", "c"}),
        (VehicleSelector(tags={"depot": "north"}), {"a", "d"}),
        (VehicleSelector(fleet="acme", tags={"depot": "north", "model": "e"}), {"a"}),
        (VehicleSelector(vehicle_ids=("b", "d", "zz")), {"b", "d"}),
        (VehicleSelector(fleet="acme", vehicle_ids=("b", "d")), {"b"}),
        (VehicleSelector(tags={"n": "1"}), {"c"}),
        (VehicleSelector(vehicle_ids=()), set()),
    ],
)
def test_a_vehicle_is_admitted_when_it_meets_every_criterion(selector: VehicleSelector, admitted: set[str]) -> None:
    """Fleet, tags and ids are all required; a tag matches only the same string (not 1 for "1")."""
    fleet = [
        twin("a", "acme", depot="north", model="e"),
        twin("b", "acme", depot="south"),
        twin("c", "acme", n="1"),
        twin("d", "other", depot="north", n=1),
    ]
    assert {t.vehicle_id for t in fleet if selector.admits(t)} == admitted


def test_needs_twins_only_for_fleet_or_tags() -> None:
    """Ids alone choose vehicles without their twins (history outlives a deleted twin)."""
    assert not VehicleSelector.one("v").needs_twins
    assert VehicleSelector(fleet="f").needs_twins
    assert VehicleSelector(tags={"k": "v"}, vehicle_ids=("v",)).needs_twins


def test_wire_shape_is_strict_and_omits_defaults() -> None:
    """Rules and jobs carry a selector as JSON: unknown fields are refused, unset ones are left out."""
    selector = msgspec.json.decode(b'{"fleet": "f", "vehicle_ids": ["x", "y"]}', type=VehicleSelector)
    assert selector == VehicleSelector(fleet="f", vehicle_ids=("x", "y"))
    assert msgspec.json.decode(msgspec.json.encode(selector)) == {"fleet": "f", "vehicle_ids": ["x", "y"]}
    with pytest.raises(msgspec.ValidationError, match="unknown field `depot`"):
        msgspec.json.decode(b'{"depot": "north"}', type=VehicleSelector)
