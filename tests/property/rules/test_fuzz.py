"""Any text given to the compiler either compiles or raises RuleSyntaxError, never anything else."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rules import FUNCTIONS, CompiledExpr, MemoryContext, RuleSyntaxError, compile_rule, parse_message
from rules.paths import RESERVED
from tests.property.rules.strategies import ZONES, contexts

TOKENS = [
    *FUNCTIONS,
    "and",
    "or",
    "not",
    "in",
    "true",
    "false",
    "null",
    "soc",
    "battery.temp_c",
    "desired.charge_limit",
    "tags.depot",
    "gps",
    "0",
    "1",
    "2.5",
    "1e308",
    "5m",
    "30s",
    '"depot"',
    "'north'",
    '"gps"',
    "+",
    "-",
    "*",
    "/",
    "%",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "(",
    ")",
    "(",
    ")",
    "[",
    "]",
    ",",
    ".",
]
NEAR_MISSES = [
    *RESERVED,
    "__class__",
    "desired",
    "1e999",
    "5min",
    '"',
    "\\",
    "=",
    "!",
    "&&",
    "||",
    ":",
    ";",
    "{",
    "}",
    "#",
    "@",
    "\u202e",
    "\u200b",
    "é",
    "\t",
]
SEPARATORS = st.sampled_from(["", " ", " ", "\n"])


@st.composite
def token_soup(draw: st.DrawFn) -> str:
    """Tokens of the language and near misses, glued together in any order."""
    token = st.integers(0, 9).flatmap(lambda n: st.sampled_from(NEAR_MISSES if n == 0 else TOKENS))
    tokens = draw(st.lists(token, max_size=25))
    return "".join(token + draw(SEPARATORS) for token in tokens)


def check_error(error: RuleSyntaxError, source: str) -> None:
    """The error points inside the source and renders as message, line and caret."""
    lines = source.split("\n")
    assert 1 <= error.line <= max(1, len(lines))
    assert 1 <= error.column <= len(lines[error.line - 1]) + 1
    message, shown, caret = str(error).split("\n")
    assert message.endswith(f" at line {error.line}, column {error.column}")
    assert caret.strip() == "^"
    assert all(char.isprintable() or char == "\t" for char in shown + caret)


def compiles_or_refuses(source: str) -> CompiledExpr | None:
    """Compile `source`; return the rule, or check the error and return None."""
    try:
        return compile_rule(source)
    except RuleSyntaxError as error:
        check_error(error, source)
        return None


@given(st.text(max_size=300))
def test_arbitrary_text_only_raises_rule_syntax_error(source: str) -> None:
    """Random unicode never escapes as another exception."""
    compiles_or_refuses(source)


@given(token_soup(), contexts())
def test_token_soup_compiles_or_is_refused_and_never_fails_later(source: str, ctx: MemoryContext) -> None:
    """Shuffled tokens compile or raise RuleSyntaxError; what compiles evaluates without raising."""
    rule = compiles_or_refuses(source)
    if rule is not None:
        assert rule.evaluate(ctx, ZONES) is (rule.value(ctx, ZONES) is True)


@given(st.text(alphabet=st.sampled_from(list("{}.abc_ :!0\n\\")), max_size=40) | st.text(max_size=60))
def test_message_templates_only_raise_rule_syntax_error(template: str) -> None:
    """Any template parses or raises RuleSyntaxError pointing inside it."""
    try:
        parsed = parse_message(template)
    except RuleSyntaxError as error:
        check_error(error, template)
        return
    assert isinstance(parsed.render_values({}), str)
