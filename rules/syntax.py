"""The syntax tree of a rule: frozen Structs, each with the line and column it came from.

An operator node's position is its operator token; a call's is its function name;
a value's or a field's is its first character.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from rules.context import Path, Source


class Node(msgspec.Struct, frozen=True, kw_only=True):
    line: int
    column: int


class NumberLit(Node, frozen=True):
    value: float


class DurationLit(Node, frozen=True):
    """`30s`, `5m`, `2h`, `1d`; `seconds` is the value, `text` what was written."""

    seconds: float
    text: str


class StringLit(Node, frozen=True):
    value: str


class BoolLit(Node, frozen=True):
    value: bool


class NullLit(Node, frozen=True):
    pass


class Field(Node, frozen=True):
    source: Source
    path: Path


class Unary(Node, frozen=True):
    """`-x` or `not x`."""

    op: str
    operand: Expr


class Binary(Node, frozen=True):
    """Arithmetic: `+ - * / %`."""

    op: str
    left: Expr
    right: Expr


class Compare(Node, frozen=True):
    """`== != < <= > >=`; never chained."""

    op: str
    left: Expr
    right: Expr


class BoolOp(Node, frozen=True):
    """`a and b and c` or `a or b or c`: two or more operands."""

    op: str
    operands: tuple[Expr, ...]


class Membership(Node, frozen=True):
    """`x in [...]` or `x not in [...]`; the list is always written out."""

    negated: bool
    operand: Expr
    items: tuple[Expr, ...]


class Call(Node, frozen=True):
    name: str
    args: tuple[Expr, ...]


Expr = (
    NumberLit
    | DurationLit
    | StringLit
    | BoolLit
    | NullLit
    | Field
    | Unary
    | Binary
    | Compare
    | BoolOp
    | Membership
    | Call
)


def children(node: Expr) -> tuple[Expr, ...]:
    """The direct subexpressions of `node`, left to right."""
    match node:
        case Unary(operand=operand):
            return (operand,)
        case Binary(left=left, right=right) | Compare(left=left, right=right):
            return (left, right)
        case BoolOp(operands=operands):
            return operands
        case Membership(operand=operand, items=items):
            return (operand, *items)
        case Call(args=args):
            return args
        case _:
            return ()


def walk(node: Expr) -> Iterator[Expr]:
    """Every node of the tree, parents before children, without recursion."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(children(current)))
