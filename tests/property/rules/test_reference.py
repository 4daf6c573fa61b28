"""Compiled rules agree with the reference interpreter on generated rules and twins."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules import FUNCTIONS, Compiler, EvalContext, MemoryContext, Path, Source, compile_rule, reference
from rules.parser import parse
from tests.property.rules.strategies import (
    ZONES,
    boolean,
    calls_of,
    contexts,
    expressions,
    rules_text,
    simple_arguments,
)

COMPILER = Compiler()


def same_result(a: object, b: object) -> bool:
    """Results agree: identical, equal with the same type, or both NaN (a raw twin value)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


@pytest.mark.parametrize("depth", [1, 2])
@given(data=st.data(), ctx=contexts())
def test_compiled_evaluation_equals_the_reference(depth: int, data: st.DataObject, ctx: MemoryContext) -> None:
    """For every well-typed rule and twin, the closures compute what the tree walker does."""
    source = data.draw(boolean(depth), label="source")
    rule = compile_rule(source)
    expected = reference.evaluate(parse(source), ctx, ZONES)
    assert same_result(rule.value(ctx, ZONES), expected)
    assert rule.evaluate(ctx, ZONES) is (expected is True)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@given(data=st.data(), ctx=contexts())
def test_each_function_equals_the_reference(name: str, data: st.DataObject, ctx: MemoryContext) -> None:
    """Every function of the table, called on its own, gives the reference's value."""
    source = data.draw(calls_of(name, simple_arguments), label="source")
    expression = COMPILER.compile(source, condition=False)
    assert same_result(expression.value(ctx, ZONES), reference.evaluate(parse(source), ctx, ZONES))


@given(expressions, contexts())
def test_expressions_of_any_type_equal_the_reference(source: str, ctx: MemoryContext) -> None:
    """Numbers, strings and conditions alike: the compiled value is the reference's value."""
    expression = COMPILER.compile(source, condition=False)
    assert same_result(expression.value(ctx, ZONES), reference.evaluate(parse(source), ctx, ZONES))


class Recording:
    """An EvalContext that remembers what was read, to check `fields` and `uses_time`."""

    def __init__(self, inner: MemoryContext) -> None:
        self.inner = inner
        self.read: dict[Source, set[Path]] = {source: set() for source in Source}
        self.clock = False
        self.memo: dict[object, object] = {}

    @property
    def now(self) -> float:
        self.clock = True
        return self.inner.now

    def value(self, path: Path, source: Source) -> object:
        self.read[source].add(path)
        return self.inner.value(path, source)

    def previous(self, path: Path) -> object:
        self.read[Source.REPORTED].add(path)
        return self.inner.previous(path)

    def reported_at(self, path: Path) -> float | None:
        self.read[Source.REPORTED].add(path)
        return self.inner.reported_at(path)

    def previous_reported_at(self, path: Path) -> float | None:
        self.read[Source.REPORTED].add(path)
        return self.inner.previous_reported_at(path)

    def connected(self) -> bool | None:
        self.clock = True
        return self.inner.connected()

    def connected_since(self) -> float | None:
        self.clock = True
        return self.inner.connected_since()


@given(rules_text, contexts())
def test_fields_cover_everything_a_rule_reads(source: str, ctx: MemoryContext) -> None:
    """The engine may skip a rule when none of its fields changed: fields must be complete."""
    rule = compile_rule(source)
    recording = Recording(ctx)
    checked: EvalContext = recording
    rule.value(checked, ZONES)
    assert recording.read[Source.REPORTED] <= rule.fields
    assert recording.read[Source.DESIRED] <= rule.desired_fields
    assert recording.read[Source.TAGS] <= rule.tag_fields
    if recording.clock:
        assert rule.uses_time
