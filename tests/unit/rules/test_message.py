"""Alert message templates: parsing, checking at save time, and rendering."""

from __future__ import annotations

import pytest

from rules import (
    MISSING,
    Compiler,
    Limits,
    MemoryContext,
    RuleSyntaxError,
    Source,
    format_value,
    parse_message,
    render_message,
)

CTX = MemoryContext(
    reported={"battery": {"temp_c": 63.5}, "soc": 12, "gps": {"lat": 1.5, "lon": 2}, "charging": False},
    desired={"charge_limit": 80},
    tags={"depot": "north"},
)


def test_render_from_a_twin() -> None:
    """Placeholders read reported, desired and tags; `{{`/`}}` are braces."""
    template = parse_message("Battery {battery.temp_c} C at {tags.depot}, limit {desired.charge_limit} {{ok}}")
    assert template.render(CTX) == "Battery 63.5 C at north, limit 80 {ok}"


def test_placeholders_and_fields() -> None:
    """A template lists its placeholders and the reported fields it shows."""
    template = parse_message("{soc} {desired.charge_limit} {reported.tags.x}")
    assert [(p.key, p.source, p.path) for p in template.placeholders] == [
        ("soc", Source.REPORTED, ("soc",)),
        ("desired.charge_limit", Source.DESIRED, ("charge_limit",)),
        ("reported.tags.x", Source.REPORTED, ("tags", "x")),
    ]
    assert template.fields == {("soc",), ("tags", "x")}


def test_missing_values_render_as_question_marks() -> None:
    """Absent fields and keys not given render as '?'."""
    assert parse_message("{absent} and {soc}").render(CTX) == "? and 12"
    assert render_message("{a}-{b}", {"a": 1}) == "1-?"


def test_collect_then_render_values() -> None:
    """Values collected when the alert fired render the same message later."""
    template = parse_message("{soc}% {charging}")
    values = template.collect(CTX)
    assert values == {"soc": 12, "charging": False}
    assert template.render_values(values) == "12% false"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (12, "12"),
        (12.0, "12"),
        (12.25, "12.25"),
        (1e20, "1e+20"),
        (-0.5, "-0.5"),
        (True, "true"),
        (False, "false"),
        (None, "?"),
        (MISSING, "?"),
        (float("nan"), "?"),
        ("north", "north"),
        ("line\nbreak\x1b[31m", "line break [31m"),
        ({"lat": 1}, '{"lat":1}'),
        ([1, "a"], '[1,"a"]'),
        ("x" * 300, "x" * 200 + "..."),
        pytest.param(10**5000, "?", id="huge-int"),
        (object(), "?"),
    ],
)
def test_format_value(value: object, text: str) -> None:
    """Values render as JSON-like text, never long, never with control characters."""
    assert format_value(value) == text


def test_no_format_spec_injection() -> None:
    """Values are never interpreted: braces and format syntax in data are shown as they are."""
    ctx = MemoryContext(reported={"name": "{0.__class__} {soc!r:>10}"})
    assert parse_message("{name}").render(ctx) == "{0.__class__} {soc!r:>10}"


@pytest.mark.parametrize(
    ("template", "message", "column"),
    [
        ("{soc:.1f}", "placeholder 'soc:.1f' has a format spec; write only a field path, like {soc}", 1),
        ("x {soc!r}", "placeholder 'soc!r' has a format spec; write only a field path, like {soc}", 3),
        ("{}", "empty placeholder '{}'; name a field, like {soc}", 1),
        ("a } b", "single '}' in message; write '}}' for a literal brace", 3),
        ("a { b", "unclosed '{' in message; write '{{' for a literal brace", 3),
        (
            "{a b}",
            "invalid placeholder: 'a b' is not a field path; write names joined by dots, like battery.temp_c",
            1,
        ),
        ("{0}", "invalid placeholder: '0' is not a field path; write names joined by dots, like battery.temp_c", 1),
        ("{x.__class__}", "invalid placeholder: names starting with '__' are not allowed: '__class__'", 1),
        (
            "{abs(soc)}",
            "invalid placeholder: 'abs(soc)' is not a field path; write names joined by dots, like battery.temp_c",
            1,
        ),
        (
            "{tags}",
            "invalid placeholder: 'tags' alone is the whole tags document; name a key in it, like tags.depot",
            1,
        ),
    ],
)
def test_invalid_templates(template: str, message: str, column: int) -> None:
    """Bad placeholders are refused when the rule is saved, pointing at the brace."""
    with pytest.raises(RuleSyntaxError) as caught:
        parse_message(template)
    assert (caught.value.message, caught.value.line, caught.value.column) == (message, 1, column)


def test_error_positions_span_lines() -> None:
    """A multi-line template reports the line of the bad placeholder."""
    with pytest.raises(RuleSyntaxError) as caught:
        parse_message("first line\nsecond {bad one}")
    assert (caught.value.line, caught.value.column) == (2, 8)


def test_message_length_limit() -> None:
    """Templates longer than max_message_length are refused; the compiler applies its limits."""
    with pytest.raises(RuleSyntaxError, match="message is too long: 1025 characters, the limit is 1024"):
        parse_message("x" * 1025)
    compiler = Compiler(limits=Limits(max_message_length=10))
    with pytest.raises(RuleSyntaxError, match="message is too long"):
        compiler.compile_message("{soc} is too low")
