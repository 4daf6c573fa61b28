"""Zones: validation, containment, and the inside / entered / left functions."""

from __future__ import annotations

import msgspec
import pytest

from rules import (
    MISSING,
    Circle,
    Compiler,
    LatLon,
    MemoryContext,
    Polygon,
    Position,
    RuleConfigError,
    Zone,
    ZoneSet,
    builtins,
    compile_rule,
)
from rules.geo import contains, distance_m

# A 1 km circle around (0, 0), and a unit square with a notch cut out of its top
# edge (concave), from lat/lon 10 to 11.
ZONES = ZoneSet.from_data(
    {
        "depot-north": {"kind": "circle", "lat": 0.0, "lon": 0.0, "radius_m": 1000},
        "city-center": {
            "kind": "polygon",
            "vertices": [
                {"lat": 10.0, "lon": 10.0},
                {"lat": 10.0, "lon": 11.0},
                {"lat": 11.0, "lon": 11.0},
                {"lat": 11.0, "lon": 10.6},
                {"lat": 10.5, "lon": 10.5},
                {"lat": 11.0, "lon": 10.4},
                {"lat": 11.0, "lon": 10.0},
            ],
        },
    }
)


def at(lat: object, lon: object, *, before: tuple[object, object] | None = None) -> MemoryContext:
    reported = {"gps": {"lat": lat, "lon": lon}}
    previous = None if before is None else {"gps": {"lat": before[0], "lon": before[1]}}
    return MemoryContext(reported=reported, before=previous)


class TestContainment:
    """Circles by great-circle distance, polygons by ray casting on lat/lon."""

    @pytest.mark.parametrize(
        ("lat", "lon", "inside"),
        [(0.0, 0.0, True), (0.0089, 0.0, True), (0.0, -0.0089, True), (0.0091, 0.0, False), (1.0, 1.0, False)],
    )
    def test_circle(self, lat: float, lon: float, inside: bool) -> None:
        """A 1 km circle holds points up to ~0.00899 degrees of latitude away."""
        assert contains(ZONES["depot-north"], lat, lon) is inside

    def test_circle_includes_its_boundary(self) -> None:
        """A point exactly radius_m away is inside."""
        distance = distance_m(0.0, 0.0, 0.005, 0.005)
        assert contains(Circle(lat=0.0, lon=0.0, radius_m=distance), 0.005, 0.005)

    @pytest.mark.parametrize(
        ("lat", "lon", "inside"),
        [
            (10.2, 10.2, True),
            (10.9, 10.2, True),
            (10.9, 10.8, True),
            (10.9, 10.5, False),  # in the notch
            (10.4, 10.5, True),  # below the notch
            (9.9, 10.5, False),
            (10.5, 11.1, False),
            (12.0, 12.0, False),
        ],
    )
    def test_concave_polygon(self, lat: float, lon: float, inside: bool) -> None:
        """Ray casting handles concave polygons."""
        assert contains(ZONES["city-center"], lat, lon) is inside


class TestZoneFunctions:
    @pytest.mark.parametrize(
        ("ctx", "expected"),
        [
            (at(0.001, 0.001), True),
            (at(0.5, 0.5), False),
            (at(None, 0.0), MISSING),
            (at("0", 0.0), MISSING),
            (at(95.0, 0.0), MISSING),
            (MemoryContext(), MISSING),
        ],
    )
    def test_inside(self, ctx: MemoryContext, expected: object) -> None:
        """inside() is MISSING when the position is missing, mistyped or off the map."""
        assert compile_rule('inside("depot-north")').value(ctx, ZONES) is expected

    @pytest.mark.parametrize(
        ("before", "now", "entered", "left"),
        [
            ((0.5, 0.5), (0.0, 0.0), True, False),
            ((0.0, 0.0), (0.5, 0.5), False, True),
            ((0.0, 0.0), (0.001, 0.0), False, False),
            ((0.5, 0.5), (0.6, 0.6), False, False),
        ],
    )
    def test_entered_and_left_compare_before_and_now(
        self, before: tuple[float, float], now: tuple[float, float], entered: bool, left: bool
    ) -> None:
        """entered: outside before and inside now; left: the reverse."""
        ctx = at(*now, before=before)
        assert compile_rule('entered("depot-north")').value(ctx, ZONES) is entered
        assert compile_rule('left("depot-north")').value(ctx, ZONES) is left

    def test_entered_without_a_previous_position_is_missing(self) -> None:
        """The first position ever reported neither entered nor left: it is unknown."""
        ctx = MemoryContext(reported={"gps": {"lat": 0.0, "lon": 0.0}}, before={})
        assert compile_rule('entered("depot-north")').value(ctx, ZONES) is MISSING
        assert compile_rule('left("depot-north")').value(ctx, ZONES) is MISSING

    def test_issue_examples(self) -> None:
        """`left("depot-north") and speed > 5` and `speed > 120 and inside("city-center")`."""
        leaving = MemoryContext(
            reported={"gps": {"lat": 0.02, "lon": 0.0}, "speed": 30},
            before={"gps": {"lat": 0.0, "lon": 0.0}, "speed": 30},
        )
        speeding = MemoryContext(reported={"gps": {"lat": 10.2, "lon": 10.2}, "speed": 130})
        assert compile_rule('left("depot-north") and speed > 5').evaluate(leaving, ZONES)
        assert compile_rule('speed > 120 and inside("city-center")').evaluate(speeding, ZONES)

    def test_unknown_zone_at_evaluation_is_missing(self) -> None:
        """Compiled without the zone list, a zone that does not exist makes the condition unknown."""
        rule = compile_rule('inside("gone") or not inside("gone")')
        assert rule.value(at(0.0, 0.0), ZONES) is MISSING
        assert rule.evaluate(at(0.0, 0.0)) is False

    def test_zones_are_passed_per_evaluation(self) -> None:
        """The same compiled rule sees zones as they are when it is evaluated."""
        rule = compile_rule('inside("depot-north")')
        moved = ZoneSet({"depot-north": Circle(lat=50.0, lon=8.0, radius_m=100.0)})
        assert (rule.evaluate(at(0.0, 0.0), ZONES), rule.evaluate(at(0.0, 0.0), moved)) == (True, False)

    def test_one_context_never_serves_a_stale_zone_answer(self) -> None:
        """Zone answers shared within a context follow a replaced zone and a moved vehicle."""
        rule = compile_rule('inside("depot-north")')
        ctx = at(0.0, 0.0)
        moved = ZoneSet({"depot-north": Circle(lat=50.0, lon=8.0, radius_m=100.0)})
        assert [rule.evaluate(ctx, ZONES), rule.evaluate(ctx, moved), rule.evaluate(ctx, ZONES)] == [True, False, True]
        ctx.reported = {"gps": {"lat": 5.0, "lon": 5.0}}
        assert rule.evaluate(ctx, ZONES) is False

    def test_rules_on_one_update_share_a_zone_test(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Two rules testing one zone on one update compute it once; a cheaper operand that decides skips it."""
        computed: list[tuple[object, object]] = []
        located = builtins._located

        def counting(zone: Zone, lat: object, lon: object) -> object:
            computed.append((lat, lon))
            return located(zone, lat, lon)

        monkeypatch.setattr(builtins, "_located", counting)
        ctx = MemoryContext(reported={"gps": {"lat": 0.0, "lon": 0.0}, "speed": 0})
        assert not compile_rule('inside("depot-north") and speed > 5').evaluate(ctx, ZONES)
        assert computed == []
        assert compile_rule('inside("depot-north")').evaluate(ctx, ZONES)
        assert compile_rule('inside("depot-north") and speed < 5').evaluate(ctx, ZONES)
        assert computed == [(0.0, 0.0)]

    def test_fields_and_zones_used(self) -> None:
        """Zone functions read the position fields and name their zones."""
        rule = compile_rule('entered("depot-north") or left("city-center")')
        assert rule.fields == {("gps", "lat"), ("gps", "lon")}
        assert rule.zones_used == {"depot-north", "city-center"}

    def test_position_fields_are_configurable(self) -> None:
        """The compiler can read the position from other reported fields."""
        compiler = Compiler(position=Position(lat="location.latitude", lon="location.longitude"))
        rule = compiler.compile('inside("depot-north")')
        ctx = MemoryContext(reported={"location": {"latitude": 0.0, "longitude": 0.0}})
        assert rule.fields == {("location", "latitude"), ("location", "longitude")}
        assert rule.evaluate(ctx, ZONES)


class TestValidation:
    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ({"kind": "circle", "lat": 91, "lon": 0, "radius_m": 1}, "latitude must be within -90..90 degrees, got 91"),
            ({"kind": "circle", "lat": 0, "lon": -181, "radius_m": 1}, "longitude must be within -180..180 degrees"),
            ({"kind": "circle", "lat": 0, "lon": 0, "radius_m": 0}, "radius_m must be a positive number of metres"),
            ({"kind": "circle", "lat": 0, "lon": 0, "radius_m": -5}, "radius_m must be a positive number of metres"),
            ({"kind": "polygon", "vertices": [{"lat": 0, "lon": 0}, {"lat": 1, "lon": 1}]}, "at least 3 vertices"),
            (
                {"kind": "polygon", "vertices": [{"lat": 0, "lon": 0}, {"lat": 1, "lon": 1}, {"lat": -100, "lon": 1}]},
                "latitude must be within -90..90",
            ),
            ({"kind": "square"}, "Invalid value 'square'"),
            ({"kind": "circle", "lat": 0, "lon": 0, "radius_m": 1, "colour": "red"}, "unknown field `colour`"),
            ({"kind": "circle", "lat": 0, "lon": 0}, "missing required field `radius_m`"),
        ],
    )
    def test_invalid_zones_are_refused_with_their_name(self, data: dict[str, object], message: str) -> None:
        """Decoding checks ranges, vertex counts and fields, and names the zone."""
        with pytest.raises(RuleConfigError, match="^zone 'z': .*" + message.replace("(", r"\(")):
            ZoneSet.from_data({"z": data})

    def test_direct_construction_is_validated_too(self) -> None:
        """Building Structs in code runs the same checks."""
        with pytest.raises(RuleConfigError):
            Circle(lat=0.0, lon=0.0, radius_m=float("nan"))
        with pytest.raises(RuleConfigError):
            LatLon(lat=float("inf"), lon=0.0)
        with pytest.raises(RuleConfigError):
            Polygon(vertices=())

    @pytest.mark.parametrize("name", ["", "has space", "x" * 65, "caf\u00e9", "a/b"])
    def test_zone_names_are_restricted(self, name: str) -> None:
        """Zone names are 1-64 of letters, digits, '_', '.', '-'."""
        with pytest.raises(RuleConfigError, match="zone name"):
            ZoneSet({name: Circle(lat=0.0, lon=0.0, radius_m=1.0)})

    def test_zone_set_round_trips_through_plain_data(self) -> None:
        """to_data gives what from_data reads, and JSON carries it."""
        data = msgspec.json.decode(msgspec.json.encode(ZONES.to_data()))
        assert ZoneSet.from_data(data) == ZONES

    def test_a_zone_set_is_a_read_only_mapping(self) -> None:
        """ZoneSet is a Mapping of name to zone."""
        assert sorted(ZONES) == ["city-center", "depot-north"]
        assert len(ZONES) == 2
        assert isinstance(ZONES["depot-north"], Circle)
        assert "nowhere" not in ZONES
