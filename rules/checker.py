"""Type-checks a syntax tree and collects what the rule reads.

Errors are `RuleTypeError`s pointing at the offending node. Fields are typed ANY,
since a twin's values are only known at run time; an operation that gets a value of
the wrong type at run time yields MISSING instead of failing.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from rules.context import Path, Source
from rules.errors import RuleTypeError, quote
from rules.functions import FUNCTIONS, Param, Signature, Type
from rules.paths import parse_path
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
    Node,
    NullLit,
    NumberLit,
    StringLit,
    Unary,
)
from rules.zones import ZONE_NAME

_NULL_USE = "null can only be compared with == or !=, like x == null"
_SHOWN_ZONES = 5


@dataclass(frozen=True, slots=True)
class Analysis:
    """What the checker learned about a well-typed rule."""

    type: Type
    fields: frozenset[Path]
    desired_fields: frozenset[Path]
    tag_fields: frozenset[Path]
    zones: frozenset[str]
    uses_time: bool


def check(
    tree: Expr,
    source: str,
    *,
    position: tuple[Path, Path],
    zones: Collection[str] | None = None,
    condition: bool = True,
) -> Analysis:
    """Type-check `tree`; with `condition`, its result must be a boolean.

    With `zones` given, a zone name not among them is an error; without, any
    well-formed zone name is accepted and an unknown one evaluates to MISSING.
    """
    checker = _Checker(source, position, zones)
    result = checker.visit(tree)
    if condition and result not in (Type.BOOL, Type.ANY):
        raise checker.error(f"a rule must be a condition that is true or false, got a {result.value}", tree)
    return Analysis(
        type=result,
        fields=frozenset(checker.fields[Source.REPORTED]),
        desired_fields=frozenset(checker.fields[Source.DESIRED]),
        tag_fields=frozenset(checker.fields[Source.TAGS]),
        zones=frozenset(checker.zones_used),
        uses_time=checker.uses_time,
    )


@dataclass
class _Checker:
    source: str
    position: tuple[Path, Path]
    known_zones: Collection[str] | None
    fields: dict[Source, set[Path]] = field(default_factory=lambda: {source: set() for source in Source})
    zones_used: set[str] = field(default_factory=set)
    uses_time: bool = False

    def error(self, message: str, node: Node) -> RuleTypeError:
        return RuleTypeError(message, node.line, node.column, self.source)

    def visit(self, node: Expr) -> Type:
        match node:
            case NumberLit():
                return Type.NUMBER
            case DurationLit():
                return Type.DURATION
            case StringLit():
                return Type.STRING
            case BoolLit():
                return Type.BOOL
            case NullLit():
                raise self.error(_NULL_USE, node)
            case Field(source=source, path=path):
                self.fields[source].add(path)
                return Type.ANY
            case Unary(op="-", operand=operand):
                kind = self._numeric(operand, "'-'")
                return Type.DURATION if kind is Type.DURATION else Type.NUMBER
            case Unary(operand=operand):
                self._boolean(operand, "'not'")
                return Type.BOOL
            case Binary():
                return self._binary(node)
            case Compare():
                self._compare(node)
                return Type.BOOL
            case BoolOp(op=op, operands=operands):
                for operand in operands:
                    self._boolean(operand, f"'{op}'")
                return Type.BOOL
            case Membership():
                self._membership(node)
                return Type.BOOL
            case Call():
                return self._call(node)

    def _numeric(self, node: Expr, what: str) -> Type:
        kind = self.visit(node)
        if not kind.numeric:
            raise self.error(f"{what} needs a number, got a {kind.value}", node)
        return kind

    def _boolean(self, node: Expr, what: str) -> None:
        kind = self.visit(node)
        if kind not in (Type.BOOL, Type.ANY):
            raise self.error(f"{what} needs a boolean, got a {kind.value}", node)

    def _binary(self, node: Binary) -> Type:
        what = f"'{node.op}'"
        left = self._numeric(node.left, what)
        right = self._numeric(node.right, what)
        durations = (left is Type.DURATION, right is Type.DURATION)
        if node.op in "+-" and all(durations):
            return Type.DURATION
        if node.op == "*" and any(durations) and Type.NUMBER in (left, right):
            return Type.DURATION
        if node.op == "/" and durations == (True, False) and right is Type.NUMBER:
            return Type.DURATION
        return Type.NUMBER

    def _compare(self, node: Compare) -> None:
        ordering = node.op not in ("==", "!=")
        nulls = [side for side in (node.left, node.right) if isinstance(side, NullLit)]
        if nulls:
            if ordering:
                raise self.error(_NULL_USE, nulls[0])
            for side in (node.left, node.right):
                if not isinstance(side, NullLit):
                    self.visit(side)
            return
        left, right = self.visit(node.left), self.visit(node.right)
        problem = _incomparable(left, right, ordering)
        if problem is not None:
            raise self.error(f"{problem} using '{node.op}'", node)

    def _membership(self, node: Membership) -> None:
        operand = self.visit(node.operand)
        known: tuple[Type, Expr] | None = None
        for item in node.items:
            kind = self.visit(item)
            problem = _incomparable(operand, kind, ordering=False)
            if problem is not None:
                raise self.error(f"{problem} in this list", item)
            if kind is Type.ANY:
                continue
            if known is not None and _incomparable(known[0], kind, ordering=False) is not None:
                raise self.error(f"list items must all be of one type: a {known[0].value} and a {kind.value}", item)
            known = known or (kind, item)

    def _call(self, node: Call) -> Type:
        signature = FUNCTIONS.get(node.name)
        if signature is None:
            raise self.error(f"unknown function '{node.name}'", node)
        if not signature.accepts(len(node.args)):
            raise self.error(
                f"{node.name}() takes {signature.arity()}, got {len(node.args)}",
                node.args[len(signature.params)] if len(node.args) > len(signature.params) else node,
            )
        for index, arg in enumerate(node.args):
            self._argument(signature, index, arg)
        if signature.uses_time:
            self.uses_time = True
        if signature.uses_position:
            self.fields[Source.REPORTED].update(self.position)
        return signature.result

    def _argument(self, signature: Signature, index: int, arg: Expr) -> None:
        param = signature.param(index)
        where = f"argument {index + 1} of {signature.name}()"
        if param is Param.NUMBER:
            kind = self.visit(arg)
            if not kind.numeric:
                raise self.error(f"{where} must be a number, got a {kind.value}", arg)
        elif param is Param.FIELD:
            if not isinstance(arg, Field) or arg.source is not Source.REPORTED:
                raise self.error(f"{where} must be {param.value}", arg)
            self.visit(arg)
        elif param is Param.PATH:
            if isinstance(arg, Field) and arg.source is Source.REPORTED:
                dotted = ".".join(arg.path)
                raise self.error(f'{where} is a path written as a string: {signature.name}("{dotted}")', arg)
            if not isinstance(arg, StringLit):
                raise self.error(f"{where} must be {param.value}", arg)
            try:
                source, path = parse_path(arg.value)
            except ValueError as exc:
                raise self.error(f"{where}: {exc}", arg) from None
            if source is not Source.REPORTED:
                raise self.error(f"{where} must be {param.value}", arg)
            self.fields[Source.REPORTED].add(path)
        else:
            self._zone(where, arg)

    def _zone(self, where: str, arg: Expr) -> None:
        if not isinstance(arg, StringLit):
            raise self.error(f"{where} must be {Param.ZONE.value}", arg)
        name = arg.value
        if not ZONE_NAME.fullmatch(name):
            raise self.error(f"{quote(name)} is not a zone name: use 1-64 letters, digits, '_', '.' or '-'", arg)
        if self.known_zones is not None and name not in self.known_zones:
            known = sorted(self.known_zones)
            listed = ", ".join(known[:_SHOWN_ZONES]) + (", ..." if len(known) > _SHOWN_ZONES else "")
            hint = f"; known zones: {listed}" if known else "; no zones are defined"
            raise self.error(f"unknown zone {quote(name)}{hint}", arg)
        self.zones_used.add(name)


def _incomparable(left: Type, right: Type, ordering: bool) -> str | None:
    """Why values of these types cannot be compared, or None when they can."""
    if ordering and Type.BOOL in (left, right):
        return "booleans cannot be ordered"
    if Type.ANY in (left, right):
        return None
    if left.numeric and right.numeric:
        return None
    if left is right:
        return None
    return f"cannot compare a {left.value} with a {right.value}"
