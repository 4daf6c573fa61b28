"""Adversarial rules: every attempt to reach Python through the language is a RuleSyntaxError."""

from __future__ import annotations

import builtins
import contextlib
from typing import NoReturn

import pytest

from rules import MISSING, Compiler, Limits, MemoryContext, RuleSyntaxError, compile_rule

ESCAPES = [
    # Python's ways in.
    "__import__('os')",
    '__import__("os").system("id")',
    "().__class__",
    "().__class__.__bases__[0].__subclasses__()",
    "''.__class__.__mro__[1].__subclasses__()",
    "soc.__class__",
    "soc.__class__.__name__ == 'int'",
    "__builtins__",
    "x.__dict__",
    "_.__globals__",
    'open("x")',
    'open("/etc/passwd").read()',
    'eval("1")',
    'exec("import os")',
    'compile("1", "x", "eval")',
    'getattr(soc, "real")',
    'setattr(soc, "x", 1)',
    "globals()",
    "locals()",
    "vars()",
    "dir()",
    "type(soc)",
    "breakpoint()",
    "print(1)",
    "input()",
    "exit()",
    "help()",
    "id(soc)",
    "hash(soc)",
    "len(tags)",
    "sum([1, 2])",
    "soc.bit_length()",
    '"abc".upper()',
    '"{0.__class__}".format(soc)',
    "soc.real.imag()",
    "lambda: 1",
    "lambda x: x",
    "import os",
    "from os import system",
    "x if y else z",
    "[x for x in y]",
    "{x for x in y}",
    "{'a': 1}",
    "(x := 1)",
    "soc[0]",
    'soc["__class__"]',
    "tags[0:1]",
    "*args",
    "**kwargs",
    "f(*x)",
    "@decorator",
    'f"{soc}"',
    'b"bytes"',
    'r"raw"',
    "x; import os",
    "x\\\ny",
    "`soc`",
    "${soc}",
    "soc is None",
    "soc is not None",
    "True",
    "None == soc",
    "soc @ soc",
    "~soc",
    "soc ^ 1",
    "soc << 2",
    "soc // 2",
    "soc ** 2",
    "abs.__call__(1)",
    "min.__self__",
    "inside.__globals__",
    "abs(soc).__class__",
    "(abs)(1)",
    "async def f(): pass",
    "await x",
    "yield x",
    "class X: pass",
    "del soc",
    "assert soc",
    "raise Exception",
    "with open('x') as f: pass",
    "global soc",
    "1 if 1 else 2",
    "# only a comment",
    "",
    "   ",
]

UNICODE_TRICKS = [
    "s\u043ec < 15",  # Cyrillic o
    "\uff53\uff4f\uff43 < 15",  # fullwidth soc
    "soc\u200b < 15",  # zero-width space
    "soc < 15 \u202e",  # right-to-left override
    "soc < 15 # \u202e hidden",  # bidi override in a comment
    '"\u202e" == tags.x',  # bidi override in a string
    "\ufeffsoc < 15",  # byte-order mark
    "soc\u00a0< 15",  # no-break space
    "soc\u2028< 15",  # line separator
    "soc < \u0661\u0665",  # Arabic-Indic digits
    "soc < \U0001d7cf\U0001d7d3",  # mathematical bold digits
    "soc\x00 < 15",  # NUL
    "soc < 15\x1b[2J",  # terminal escape
    "\u0455oc < 15",  # Cyrillic dze looks like s
    "soc \uff1c 15",  # fullwidth less-than
    "so\u0301c < 15",  # combining accent
    "\ud800",  # lone surrogate
]


def huge_and_deep() -> list[str]:
    return [
        "(" * 100_000,
        "(" * 2000 + "x" + ")" * 2000,
        "not " * 1000 + "x",
        "-" * 4000 + "1 > 0",
        "[" * 3000,
        "abs(" * 1000 + "1" + ")" * 1000 + " > 0",
        " + ".join(["x"] * 1000) + " > 0",
        "9" * 4000 + " > 1",
        "1e99999 > 1",
        "x in [" + ", ".join(["1"] * 1500) + "]",
        "x" * 5000,
        '"' + "a" * 5000 + '"',
        "soc." * 1000 + "x > 1",
    ]


@pytest.mark.parametrize("source", ESCAPES)
def test_python_escapes_are_refused(source: str) -> None:
    """Dunder names, builtins, attribute access, indexing and Python statements are syntax errors."""
    with pytest.raises(RuleSyntaxError):
        compile_rule(source)


@pytest.mark.parametrize("source", UNICODE_TRICKS, ids=[repr(text)[:40] for text in UNICODE_TRICKS])
def test_unicode_tricks_are_refused(source: str) -> None:
    """Look-alike letters, invisible characters, bidi overrides and foreign digits are refused."""
    with pytest.raises(RuleSyntaxError) as caught:
        compile_rule(source)
    shown = str(caught.value)
    assert shown.isprintable() or all(char.isprintable() or char in "\n\t" for char in shown)


@pytest.mark.parametrize("source", huge_and_deep(), ids=lambda text: f"{text[:12]!r}x{len(text)}")
def test_huge_and_deep_rules_are_refused(source: str) -> None:
    """Huge literals and deep nesting hit a limit, never RecursionError or MemoryError."""
    with pytest.raises(RuleSyntaxError):
        compile_rule(source)


@pytest.mark.parametrize("source", huge_and_deep(), ids=lambda text: f"{text[:12]!r}x{len(text)}")
def test_limits_hold_with_the_largest_allowed_settings(source: str) -> None:
    """Even at the ceilings of every limit, nesting cannot exhaust the stack."""
    ceilings = Limits(
        max_source_length=65_536, max_depth=100, max_nodes=10_000, max_list_length=10_000, max_path_length=64
    )
    with contextlib.suppress(RuleSyntaxError):
        Compiler(limits=ceilings).compile(source)


def test_dots_only_form_field_paths() -> None:
    """`soc.real` reads a key called "real" under soc in the twin, never a Python attribute."""
    rule = compile_rule("soc.real == 5")
    assert rule.fields == {("soc", "real")}
    assert rule.value(MemoryContext(reported={"soc": 5})) is MISSING
    assert rule.value(MemoryContext(reported={"soc": {"real": 5}})) is True


def test_function_names_without_a_call_are_fields() -> None:
    """A function's name alone is just a field name: there are no function values."""
    rule = compile_rule("abs + 1 > 1")
    assert rule.fields == {("abs",)}
    assert rule.value(MemoryContext(reported={"abs": 5})) is True


@pytest.mark.parametrize("source", ['"a" * 1000000000 == "a"', 'tags.x + "a" == "b"', 'tags.x * 100000 == "b"'])
def test_string_operations_are_refused(source: str) -> None:
    """Strings cannot be multiplied or concatenated, so no rule can build a huge value."""
    with pytest.raises(RuleSyntaxError):
        compile_rule(source)


def test_arithmetic_on_strings_from_the_twin_is_missing() -> None:
    """A string where a number is expected at run time is MISSING, not repeated or joined."""
    rule = compile_rule("tags.x * 1000000000 == tags.y")
    assert rule.value(MemoryContext(tags={"x": "a", "y": "aaa"})) is MISSING


def test_compiling_and_evaluating_never_call_eval_exec_or_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiler builds closures from its own tree; Python's code evaluators are never used."""

    def forbidden(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError("the rules package must not evaluate code")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, forbidden)
    rule = compile_rule('soc < 15 and not charging or inside("z") or no_data_for("gps") > 5m')
    assert rule.evaluate(MemoryContext(reported={"soc": 3, "charging": False}))


def test_evaluation_on_hostile_twins_never_raises() -> None:
    """Huge numbers, deep objects and odd types in the twin yield MISSING, not exceptions."""
    deep: dict[str, object] = {}
    node = deep
    for _ in range(500):
        child: dict[str, object] = {}
        node["a"] = child
        node = child
    ctx = MemoryContext(
        reported={"soc": 10**1000, "speed": 1e308, "gps": {"lat": float("nan"), "lon": [1]}, "deep": deep},
        before={"soc": -(10**1000), "speed": -1e308},
        reported_ts={"soc": 1.0, "speed": 2.0},
        before_ts={"soc": 0.0, "speed": 1.0},
    )
    for source in [
        "soc * soc * soc > 0",
        "speed * speed > 0",
        "speed + speed > 0",
        "delta(speed) > 0",
        "rate(speed) > 0",
        "rate(soc) > 0",
        "changed(deep)",
        "deep == deep",
        "round(speed, -400) == 0",
        "distance_m(gps.lat, gps.lon, 0, 0) > 0",
        'inside("z")',
        'entered("z")',
    ]:
        result = compile_rule(source).value(ctx)
        assert result is MISSING or isinstance(result, bool), source
