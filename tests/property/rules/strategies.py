"""Hypothesis strategies for rules: well-typed rule text, twins to evaluate it on, and zones."""

from __future__ import annotations

from typing import TypeVar

from hypothesis import strategies as st

from rules import Circle, LatLon, MemoryContext, Polygon, ZoneSet

T = TypeVar("T")

ZONES = ZoneSet(
    {
        "depot": Circle(lat=0.0, lon=0.0, radius_m=1000.0),
        "square": Polygon(
            vertices=(
                LatLon(lat=10.0, lon=10.0),
                LatLon(lat=10.0, lon=11.0),
                LatLon(lat=11.0, lon=11.0),
                LatLon(lat=11.0, lon=10.0),
            )
        ),
    }
)
ZONE_NAMES = ["depot", "depot", "square", "square", "nowhere"]

# Reported leaves the generated twins hold (or not), and the fields rules read.
REPORTED_LEAVES = ["soc", "speed", "charging", "name", "mode", "battery.temp_c", "gps.lat", "gps.lon"]
FIELDS = [*REPORTED_LEAVES, "battery", "desired.charge_limit", "desired.mode", "tags.depot", "tags.weight"]
PREFIXES = ["gps", "battery", "soc", "battery.temp_c", "nothing"]

STRINGS = ["", "north", "south", "drive", "park", "Model 3", "zürich"]


def choice(*options: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """One of the options, each equally likely (st.one_of flattens nested choices, which skews them)."""
    return st.sampled_from(options).flatmap(lambda option: option)


numbers_text = choice(
    st.sampled_from(["0", "1", "2", "0.5", "2.5", "12", "1e3", "1e308", "1e-9", "9007199254740992"]),
    st.integers(0, 100).map(str),
    st.floats(0, 1e6, allow_nan=False).map(repr),
)
durations_text = st.sampled_from(["0s", "30s", "5m", "1.5h", "2h", "1d"])
strings_text = st.sampled_from(STRINGS).map(lambda text: '"' + text + '"')


fields = st.sampled_from(FIELDS)
reported_fields = st.sampled_from([*REPORTED_LEAVES, "battery", "nothing"])
zone_names = st.sampled_from(ZONE_NAMES)


def _call(name: str, *args: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(*args).map(lambda drawn: f"{name}({', '.join(drawn)})")


def calls_of(name: str, arg: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Calls of the function `name`, its numeric arguments drawn from `arg`."""
    zone = zone_names.map(lambda zone_name: f'"{zone_name}"')
    by_name = {
        "abs": _call("abs", arg),
        "min": st.lists(arg, min_size=2, max_size=3).map(lambda args: f"min({', '.join(args)})"),
        "max": st.lists(arg, min_size=2, max_size=3).map(lambda args: f"max({', '.join(args)})"),
        "round": choice(
            _call("round", arg),
            _call("round", arg, choice(st.sampled_from(["0", "1", "2", "-1", "0.5", "400", "-400"]), arg)),
        ),
        "clamp": _call("clamp", arg, arg, arg),
        "prev": _call("prev", reported_fields),
        "delta": _call("delta", reported_fields),
        "rate": _call("rate", reported_fields),
        "changed": _call("changed", reported_fields),
        "age": _call("age", reported_fields),
        "no_data_for": _call("no_data_for", st.sampled_from(PREFIXES).map(lambda path: f'"{path}"')),
        "connected": st.just("connected()"),
        "distance_m": choice(
            _call("distance_m", arg, arg, arg, arg),
            _call("distance_m", st.just("gps.lat"), st.just("gps.lon"), choice(arg, st.just("prev(gps.lat)")), arg),
        ),
        "inside": _call("inside", zone),
        "entered": _call("entered", zone),
        "left": _call("left", zone),
    }
    return by_name[name]


NUMERIC_FUNCTIONS = ("abs", "min", "max", "round", "clamp", "prev", "delta", "rate", "age", "no_data_for", "distance_m")
BOOLEAN_FUNCTIONS = ("changed", "connected", "inside", "entered", "left")


def numeric_calls(arg: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A call of each numeric function, equally likely."""
    return choice(*(calls_of(name, arg) for name in NUMERIC_FUNCTIONS))


def boolean_calls() -> st.SearchStrategy[str]:
    """A call of each boolean function, equally likely."""
    return choice(*(calls_of(name, numbers_text) for name in BOOLEAN_FUNCTIONS))


def num(depth: int) -> st.SearchStrategy[str]:
    """Numeric expressions (fields included: their type is only known at run time)."""
    leaves = choice(numbers_text, durations_text, fields)
    if depth <= 0:
        return leaves
    sub = st.deferred(lambda: num(depth - 1))
    arithmetic = st.tuples(sub, st.sampled_from(["+", "-", "*", "/", "%"]), sub).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})"
    )
    functions = numeric_calls(sub)
    return choice(leaves, arithmetic, arithmetic, sub.map(lambda a: f"(-{a})"), functions, functions)


texts = choice(strings_text, fields, reported_fields.map(lambda path: f"prev({path})"))


def boolean(depth: int) -> st.SearchStrategy[str]:
    """Conditions: what a rule is."""
    leaves = choice(
        st.sampled_from(["true", "false"]),
        fields,
        boolean_calls(),
    )
    if depth <= 0:
        return leaves
    sub = st.deferred(lambda: boolean(depth - 1))
    nums = num(depth)
    compare_ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
    anything = choice(nums, texts, sub)
    comparisons = choice(
        st.tuples(nums, compare_ops, nums).map(" ".join).map(lambda s: f"({s})"),
        st.tuples(texts, compare_ops, texts).map(" ".join).map(lambda s: f"({s})"),
        st.tuples(sub, st.sampled_from(["==", "!="]), sub).map(" ".join).map(lambda s: f"({s})"),
    )
    nulls = choice(
        st.tuples(anything, st.sampled_from(["== null", "!= null"])).map(lambda t: f"({t[0]} {t[1]})"),
        st.tuples(st.sampled_from(["null ==", "null !="]), anything).map(lambda t: f"({t[0]} {t[1]})"),
    )
    logic = choice(
        st.lists(sub, min_size=2, max_size=3).map(lambda args: "(" + " and ".join(args) + ")"),
        st.lists(sub, min_size=2, max_size=3).map(lambda args: "(" + " or ".join(args) + ")"),
        sub.map(lambda a: f"(not {a})"),
    )
    memberships = choice(
        _membership(nums, nums),
        _membership(nums, numbers_text),
        _membership(texts, texts),
        _membership(texts, strings_text),
        _membership(sub, st.sampled_from(["true", "false"])),
        _membership(fields, numbers_text),
        _membership(fields, strings_text),
        _membership(fields, st.sampled_from(["true", "false"])),
    )
    return choice(leaves, comparisons, comparisons, nulls, logic, logic, memberships)


def _membership(tested: st.SearchStrategy[str], items: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """`x in [...]`; a list drawn from one literal strategy holds items of one type, as the checker wants."""
    return st.tuples(tested, st.sampled_from(["in", "not in"]), st.lists(items, max_size=3)).map(
        lambda t: f"({t[0]} {t[1]} [{', '.join(t[2])}])"
    )


rules_text = st.integers(1, 3).flatmap(boolean)
"""Well-typed rules of one to three levels of conditions."""

simple_arguments = choice(numbers_text, fields, st.sampled_from(["gps.lat", "gps.lon", "prev(soc)", "-1", "-100"]))
"""Arguments for calls tested one function at a time."""

expressions = st.integers(0, 2).flatmap(lambda depth: choice(num(depth), texts, boolean(depth)))
"""Expressions of any type, as value expressions."""

# -- twins ----------------------------------------------------------------------------

junk = st.one_of(
    st.none(),
    st.integers(),
    st.just(10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(STRINGS),
    st.booleans(),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.sampled_from(["a", "lat"]), st.integers(0, 3), max_size=2),
)
numbers = choice(st.integers(-100, 100), st.floats(-200, 200), st.sampled_from([0, 0.0, 1, -1, 2.5, 1e308]))
coordinates = choice(st.floats(-0.02, 0.02), st.floats(9.9, 11.1), st.sampled_from([0.0, 10.5, 95.0, -181.0]))
positions = choice(
    st.tuples(st.floats(-0.005, 0.005), st.floats(-0.005, 0.005)),  # in the depot
    st.tuples(st.floats(10.1, 10.9), st.floats(10.1, 10.9)),  # in the square
    st.tuples(coordinates, coordinates),  # near or on the edges of either
    st.tuples(choice(coordinates, junk), choice(coordinates, junk)),
)
timestamps = choice(st.floats(0, 2000), st.integers(0, 2000).map(float), st.none())


def _leaf_values(path: str) -> st.SearchStrategy[object]:
    """Mostly values of the kind a rule expects there, sometimes anything at all."""
    if path.startswith("gps."):
        usual = coordinates
    elif path == "charging":
        usual = st.booleans()
    elif path in ("name", "mode", "desired.mode", "tags.depot"):
        usual = st.sampled_from(STRINGS)
    else:
        usual = numbers
    return choice(usual, usual, usual, junk)


def _document(values: dict[str, object]) -> dict[str, object]:
    document: dict[str, object] = {}
    for path, value in values.items():
        *parents, leaf = path.split(".")
        node = document
        for key in parents:
            child = node.setdefault(key, {})
            assert isinstance(child, dict)
            node = child
        node[leaf] = value
    return document


@st.composite
def contexts(draw: st.DrawFn) -> MemoryContext:
    """A twin at one update: present, absent and odd values, before and after, with timestamps."""
    present = st.integers(0, 4).map(bool)

    def leaves(paths: list[str]) -> dict[str, object]:
        values = {path: draw(_leaf_values(path)) for path in paths if draw(present)}
        if "gps.lat" in values:
            values["gps.lat"], values["gps.lon"] = draw(positions)
        return values

    def stamps() -> dict[str, float]:
        drawn = {path: draw(timestamps) for path in REPORTED_LEAVES if draw(present)}
        return {path: ts for path, ts in drawn.items() if ts is not None}

    current = leaves(REPORTED_LEAVES)
    before_kind = draw(st.sampled_from(["same", "changed", "fresh"]))
    if before_kind == "same":
        before = None
    elif before_kind == "changed":
        before = {**current, **leaves(REPORTED_LEAVES)}
    else:
        before = leaves(REPORTED_LEAVES)
    desired = leaves(["desired.charge_limit", "desired.mode"])
    tags = leaves(["tags.depot", "tags.weight"])
    return MemoryContext(
        reported=_document(current),
        before=None if before is None else _document(before),
        desired=_document({path.split(".", 1)[1]: value for path, value in desired.items()}),
        tags=_document({path.split(".", 1)[1]: value for path, value in tags.items()}),
        reported_ts=stamps(),
        before_ts=stamps() if draw(st.booleans()) else None,
        now=draw(st.floats(0, 3000)),
        is_connected=draw(st.sampled_from([True, False, None])),
        since=draw(timestamps),
    )
