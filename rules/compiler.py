"""Compiles a checked syntax tree into nested Python closures, once per rule.

No text of the rule is ever handed to `eval` or `exec`: each node becomes a small
closure over its children's closures, built from the tree this package owns. A
closure takes `(ctx, zones)` and returns a value, `MISSING` when the value is
unknown; it never raises on twin data.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Collection
from types import MappingProxyType
from typing import Any, Final

from rules.builtins import BUILDERS, Eval, Zones
from rules.checker import check
from rules.context import MISSING, EvalContext, Path, Source
from rules.message import MessageTemplate, parse_message
from rules.parser import DEFAULT_LIMITS, parse
from rules.settings import Limits, Position
from rules.syntax import (
    Binary,
    BoolLit,
    BoolOp,
    Call,
    Compare,
    DurationLit,
    Expr,
    Field,
    Membership,
    NullLit,
    NumberLit,
    StringLit,
    Unary,
    walk,
)
from rules.values import as_number, as_scalar, equal, finite

NO_ZONES: Final[Zones] = MappingProxyType({})

# A comparison from `operator`; applied only to two floats or two strings.
_Relation = Callable[[Any, Any], bool]

_ORDER: Final[dict[str, _Relation]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_MIRROR: Final = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_ARITHMETIC: Final[dict[str, Callable[[float, float], float]]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "%": operator.mod,
}


class CompiledExpr:
    """A rule compiled once, to be evaluated on every relevant twin update.

    - `fields`: the reported paths the rule reads; a path stands for its value and
      every key under it. Re-evaluate when one of them changes.
    - `desired_fields`, `tag_fields`: the same for desired values and tags.
    - `uses_time`: the result can change with time alone (`age`, `no_data_for`,
      `connected`), so the engine must also evaluate it on a timer.
    - `zones_used`: the zone names the rule mentions.
    """

    __slots__ = ("desired_fields", "fields", "run", "source", "tag_fields", "tree", "uses_time", "zones_used")

    def __init__(
        self,
        source: str,
        tree: Expr,
        run: Eval,
        *,
        fields: frozenset[Path],
        desired_fields: frozenset[Path],
        tag_fields: frozenset[Path],
        uses_time: bool,
        zones_used: frozenset[str],
    ) -> None:
        self.source = source
        self.tree = tree
        # The closure itself, for callers on the hot path that test `is True` themselves.
        self.run = run
        self.fields = fields
        self.desired_fields = desired_fields
        self.tag_fields = tag_fields
        self.uses_time = uses_time
        self.zones_used = zones_used

    def evaluate(self, ctx: EvalContext, zones: Zones = NO_ZONES) -> bool:
        """Whether the condition holds; MISSING (unknown) counts as not holding."""
        return self.run(ctx, zones) is True

    def value(self, ctx: EvalContext, zones: Zones = NO_ZONES) -> object:
        """The raw result: True, False or MISSING (or a twin value for a bare field)."""
        return self.run(ctx, zones)

    def __repr__(self) -> str:
        return f"CompiledExpr({self.source!r})"


class Compiler:
    """Compiles rules under one set of limits and one position setting.

    Build one at start-up from settings and reuse it; it holds no per-rule state.
    """

    def __init__(self, *, limits: Limits | None = None, position: Position | None = None) -> None:
        self.limits = limits or DEFAULT_LIMITS
        self.position = position or Position()
        self._paths = self.position.paths()

    def parse(self, text: str) -> Expr:
        """The syntax tree of `text`, unchecked. Raises `RuleSyntaxError`."""
        return parse(text, self.limits)

    def compile(self, text: str, *, zones: Collection[str] | None = None, condition: bool = True) -> CompiledExpr:
        """Parse, type-check and compile a rule. Raises `RuleSyntaxError` (or `RuleTypeError`).

        With `zones`, the known zone names, a rule naming any other zone is refused;
        without, an unknown zone is noticed only at evaluation, where it is MISSING.
        With `condition=False` the result may be of any type, for expressions whose
        `value` is wanted (a number to show in an alert) rather than a condition.
        """
        tree = parse(text, self.limits)
        analysis = check(tree, text, position=self._paths, zones=zones, condition=condition)
        return CompiledExpr(
            text,
            tree,
            self._compile(tree),
            fields=analysis.fields,
            desired_fields=analysis.desired_fields,
            tag_fields=analysis.tag_fields,
            uses_time=analysis.uses_time,
            zones_used=analysis.zones,
        )

    def compile_message(self, template: str) -> MessageTemplate:
        """Parse and check an alert message template under this compiler's limits."""
        return parse_message(template, limits=self.limits)

    def _compile(self, node: Expr) -> Eval:
        match node:
            case NumberLit(value=value) | StringLit(value=value) | BoolLit(value=value):
                return _constant(value)
            case DurationLit(seconds=seconds):
                return _constant(seconds)
            case NullLit():
                raise AssertionError("the checker allows null only in == and !=")
            case Field(source=source, path=path):
                return _read(path, source)
            case Unary(op="-", operand=NumberLit(value=value) | DurationLit(seconds=value)):
                return _constant(-value)
            case Unary(op="-", operand=operand):
                return _negate(self._compile(operand))
            case Unary(operand=operand):
                return _not(self._compile(operand))
            case Binary(op=op, left=left, right=right):
                return _arithmetic(op, self._compile(left), self._compile(right))
            case Compare():
                return self._compare(node)
            case BoolOp(op=op, operands=operands):
                # Evaluation has no side effects and `and`/`or` give the same result in any
                # order (MISSING included), so the cheap operands run first and often decide.
                ordered = sorted(operands, key=_cost)
                compiled = [self._compile(operand) for operand in ordered]
                return _and(compiled) if op == "and" else _or(compiled)
            case Membership():
                return self._membership(node)
            case Call(name=name, args=args):
                return BUILDERS[name](node, [self._compile(arg) for arg in args], self._paths)

    def _compare(self, node: Compare) -> Eval:
        left, right, op = node.left, node.right, node.op
        if isinstance(left, NullLit) or isinstance(right, NullLit):
            if isinstance(left, NullLit) and isinstance(right, NullLit):
                return _constant(op == "==")
            other = self._compile(right if isinstance(left, NullLit) else left)
            return _is_missing(other) if op == "==" else _is_present(other)
        if _constant_number(left) is not None or isinstance(left, StringLit):
            left, right, op = right, left, _MIRROR[op]
        number = _constant_number(right)
        if number is not None:
            if isinstance(left, Field):
                return _compare_field(_ORDER[op], left.path, left.source, number)
            return _compare_number(_ORDER[op], self._compile(left), number)
        if isinstance(right, StringLit):
            return _compare_string(_ORDER[op], self._compile(left), right.value)
        if op in ("==", "!="):
            return _equal(self._compile(left), self._compile(right), negate=op == "!=")
        return _order(_ORDER[op], self._compile(left), self._compile(right))

    def _membership(self, node: Membership) -> Eval:
        operand = self._compile(node.operand)
        items = node.items
        constants = [item.value for item in items if isinstance(item, NumberLit | StringLit | BoolLit)]
        kinds = {type(value) for value in constants}
        if len(constants) == len(items) and len(kinds) <= 1:
            return _in_constants(operand, frozenset(constants), node.negated)
        return _in_values(operand, [self._compile(item) for item in items], node.negated)


# Rough relative costs of evaluating a call, by function; the rest cost _CALL.
_CALL: Final = 3
_CALL_COST: Final = {"inside": 20, "entered": 40, "left": 40, "distance_m": 20, "rate": 6}


def _cost(node: Expr) -> int:
    """A rough estimate of what evaluating `node` costs, to order the operands of and/or."""
    return sum(_CALL_COST.get(n.name, _CALL) if isinstance(n, Call) else 1 for n in walk(node))


def _constant_number(node: Expr) -> float | None:
    """The value of a number or duration literal, possibly negated; None for anything else."""
    match node:
        case NumberLit(value=number) | DurationLit(seconds=number):
            return number
        case Unary(op="-", operand=NumberLit(value=number) | DurationLit(seconds=number)):
            return -number
        case _:
            return None


def _constant(value: object) -> Eval:
    def run(ctx: EvalContext, zones: Zones) -> object:
        return value

    return run


def _read(path: Path, source: Source) -> Eval:
    def run(ctx: EvalContext, zones: Zones) -> object:
        value = ctx.value(path, source)
        return MISSING if value is None else value

    return run


def _negate(operand: Eval) -> Eval:
    def run(ctx: EvalContext, zones: Zones) -> object:
        x = as_number(operand(ctx, zones))
        return MISSING if x is MISSING else -x

    return run


def _not(operand: Eval) -> Eval:
    def run(ctx: EvalContext, zones: Zones) -> object:
        value = operand(ctx, zones)
        if value is True:
            return False
        if value is False:
            return True
        return MISSING

    return run


def _arithmetic(op: str, left: Eval, right: Eval) -> Eval:
    apply = _ARITHMETIC[op]
    divides = op in ("/", "%")

    def run(ctx: EvalContext, zones: Zones) -> object:
        a = as_number(left(ctx, zones))
        if a is MISSING:
            return MISSING
        b = as_number(right(ctx, zones))
        if b is MISSING or (divides and b == 0):
            return MISSING
        return finite(apply(a, b))

    return run


def _is_missing(operand: Eval) -> Eval:
    def run(ctx: EvalContext, zones: Zones) -> object:
        return operand(ctx, zones) is MISSING

    return run


def _is_present(operand: Eval) -> Eval:
    def run(ctx: EvalContext, zones: Zones) -> object:
        return operand(ctx, zones) is not MISSING

    return run


def _compare_number(compare: _Relation, left: Eval, number: float) -> Eval:
    def run(ctx: EvalContext, zones: Zones) -> object:
        x = as_number(left(ctx, zones))
        return MISSING if x is MISSING else compare(x, number)

    return run


def _compare_field(compare: _Relation, path: Path, source: Source, number: float) -> Eval:
    # `field < 15` is most of what rules say: read and test the number in one closure.
    def run(ctx: EvalContext, zones: Zones) -> object:
        x = ctx.value(path, source)
        if type(x) is float:
            return compare(x, number) if math.isfinite(x) else MISSING
        if type(x) is int:
            y = as_number(x)
            return MISSING if y is MISSING else compare(y, number)
        return MISSING

    return run


def _compare_string(compare: _Relation, left: Eval, text: str) -> Eval:
    def run(ctx: EvalContext, zones: Zones) -> object:
        value = left(ctx, zones)
        return compare(value, text) if type(value) is str else MISSING

    return run


def _equal(left: Eval, right: Eval, *, negate: bool) -> Eval:
    def run(ctx: EvalContext, zones: Zones) -> object:
        result = equal(left(ctx, zones), right(ctx, zones))
        return result if result is MISSING or not negate else not result

    return run


def _order(compare: _Relation, left: Eval, right: Eval) -> Eval:
    def run(ctx: EvalContext, zones: Zones) -> object:
        a, b = as_scalar(left(ctx, zones)), as_scalar(right(ctx, zones))
        if a is MISSING or b is MISSING or type(a) is not type(b) or type(a) is bool:
            return MISSING
        return compare(a, b)

    return run


def _and(operands: list[Eval]) -> Eval:
    if len(operands) == 2:
        return _and_pair(*operands)

    def run(ctx: EvalContext, zones: Zones) -> object:
        result: object = True
        for operand in operands:
            value = operand(ctx, zones)
            if value is False:
                return False
            if value is not True:
                result = MISSING
        return result

    return run


def _or(operands: list[Eval]) -> Eval:
    if len(operands) == 2:
        return _or_pair(*operands)

    def run(ctx: EvalContext, zones: Zones) -> object:
        result: object = False
        for operand in operands:
            value = operand(ctx, zones)
            if value is True:
                return True
            if value is not False:
                result = MISSING
        return result

    return run


def _and_pair(first: Eval, second: Eval) -> Eval:
    def run(ctx: EvalContext, zones: Zones) -> object:
        a = first(ctx, zones)
        if a is False:
            return False
        b = second(ctx, zones)
        if b is False:
            return False
        return True if a is True and b is True else MISSING

    return run


def _or_pair(first: Eval, second: Eval) -> Eval:
    def run(ctx: EvalContext, zones: Zones) -> object:
        a = first(ctx, zones)
        if a is True:
            return True
        b = second(ctx, zones)
        if b is True:
            return True
        return False if a is False and b is False else MISSING

    return run


def _in_constants(operand: Eval, values: frozenset[object], negated: bool) -> Eval:
    kind = type(next(iter(values))) if values else None

    def run(ctx: EvalContext, zones: Zones) -> object:
        value = as_scalar(operand(ctx, zones))
        if value is MISSING:
            return MISSING
        if type(value) is not kind:
            return MISSING if kind is not None else negated
        return (value in values) is not negated

    return run


def _in_values(operand: Eval, items: list[Eval], negated: bool) -> Eval:
    def run(ctx: EvalContext, zones: Zones) -> object:
        value = operand(ctx, zones)
        if as_scalar(value) is MISSING:
            return MISSING
        result: object = False
        for item in items:
            same = equal(value, item(ctx, zones))
            if same is True:
                return not negated
            if same is MISSING:
                result = MISSING
        return result if result is MISSING else negated

    return run


DEFAULT_COMPILER: Final = Compiler()


def compile_rule(text: str, *, limits: Limits | None = None, zones: Collection[str] | None = None) -> CompiledExpr:
    """Compile `text` with the default position setting. Raises `RuleSyntaxError`."""
    compiler = DEFAULT_COMPILER if limits is None else Compiler(limits=limits)
    return compiler.compile(text, zones=zones)
