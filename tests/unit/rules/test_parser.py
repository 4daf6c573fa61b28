"""The parser: precedence, associativity, positions and the shape of the tree."""

from __future__ import annotations

import pytest

from rules import RuleSyntaxError, Source
from rules.parser import parse
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
)


def show(node: Expr) -> str:
    """A fully parenthesised rendering of the tree, to read its structure at a glance."""
    match node:
        case NumberLit(value=value):
            return repr(value)
        case DurationLit(text=text):
            return text
        case StringLit(value=value):
            return repr(value)
        case BoolLit(value=value):
            return "true" if value else "false"
        case NullLit():
            return "null"
        case Field(source=source, path=path):
            return f"{source.value}:{'.'.join(path)}"
        case Unary(op=op, operand=operand):
            return f"({op} {show(operand)})"
        case Binary(op=op, left=left, right=right) | Compare(op=op, left=left, right=right):
            return f"({show(left)} {op} {show(right)})"
        case BoolOp(op=op, operands=operands):
            return "(" + f" {op} ".join(show(operand) for operand in operands) + ")"
        case Membership(negated=negated, operand=operand, items=items):
            return f"({show(operand)} {'not in' if negated else 'in'} [{', '.join(show(item) for item in items)}])"
        case Call(name=name, args=args):
            return f"{name}({', '.join(show(arg) for arg in args)})"


@pytest.mark.parametrize(
    ("source", "tree"),
    [
        ("a + b * c", "(reported:a + (reported:b * reported:c))"),
        ("a - b - c", "((reported:a - reported:b) - reported:c)"),
        ("a / b % c", "((reported:a / reported:b) % reported:c)"),
        ("-a * b", "((- reported:a) * reported:b)"),
        ("- -a", "(- (- reported:a))"),
        ("(a + b) * c", "((reported:a + reported:b) * reported:c)"),
        ("a + 1 < b * 2", "((reported:a + 1.0) < (reported:b * 2.0))"),
        ("a or b and c", "(reported:a or (reported:b and reported:c))"),
        ("a and b and c", "(reported:a and reported:b and reported:c)"),
        ("a or b or c and d", "(reported:a or reported:b or (reported:c and reported:d))"),
        ("not a and b", "((not reported:a) and reported:b)"),
        ("not a == b", "(not (reported:a == reported:b))"),
        ("not not a", "(not (not reported:a))"),
        ("x in [1, 2] or y", "((reported:x in [1.0, 2.0]) or reported:y)"),
        ("x not in ['a',]", "(reported:x not in ['a'])"),
        ("x in []", "(reported:x in [])"),
        ("x == null", "(reported:x == null)"),
        ("abs(a - b) > 5m", "(abs((reported:a - reported:b)) > 5m)"),
        ("min(a, b, c,)", "min(reported:a, reported:b, reported:c)"),
        ("connected()", "connected()"),
        ("desired.charge_limit", "desired:charge_limit"),
        ("tags.depot", "tags:depot"),
        ("reported.tags.x", "reported:tags.x"),
        ("tyres.front_left.kpa", "reported:tyres.front_left.kpa"),
        ("(((a)))", "reported:a"),
        ("a\n  and\n  b", "(reported:a and reported:b)"),
    ],
)
def test_precedence_and_shape(source: str, tree: str) -> None:
    """Operators bind as documented: or < and < not < comparisons < + - < * / % < unary -."""
    assert show(parse(source)) == tree


def test_operator_nodes_are_positioned_at_their_operator() -> None:
    """Errors about an operator point at the operator, values at their first character."""
    tree = parse("soc < 15 and x")
    assert isinstance(tree, BoolOp)
    assert (tree.line, tree.column) == (1, 10)
    compare = tree.operands[0]
    assert isinstance(compare, Compare)
    assert (compare.column, compare.left.column, compare.right.column) == (5, 1, 7)


def test_fields_carry_their_source() -> None:
    """The first name picks reported, desired or tags; the rest is the path."""
    tree = parse("desired.a.b")
    assert isinstance(tree, Field)
    assert (tree.source, tree.path) == (Source.DESIRED, ("a", "b"))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "empty rule; write a condition, like soc < 15"),
        ("   # only a comment", "empty rule; write a condition, like soc < 15"),
        ("a ==", "unexpected end of rule; expected a value"),
        ("a == == b", "unexpected '=='; expected a value"),
        ("1 < x < 5", "comparisons cannot be chained; join them with 'and', like 'a < b and b < c'"),
        ("a == b != c", "comparisons cannot be chained; join them with 'and', like 'a < b and b < c'"),
        ("x in [1] in [true]", "comparisons cannot be chained; join them with 'and', like 'a < b and b < c'"),
        ("x in 5", "'in' needs a list on its right, like x in [1, 2]"),
        ("x not in y", "'not in' needs a list on its right, like x not in [1, 2]"),
        ("not in [1]", "'not in' needs a value on its left, like x not in [1, 2]"),
        ("[1, 2]", "a list is only allowed after 'in', like x in [1, 2]"),
        ("x in [[1]]", "a list is only allowed after 'in', like x in [1, 2]"),
        ("x in [1 2]", "expected ',' or ']' in the list, got number '2'"),
        ("abs(1 2)", "expected ',' or ')' in the arguments of abs(), got number '2'"),
        ("a.b(1)", "'a.b' is a field, not a function; there are no methods"),
        ("a.", "expected a field name after '.', got the end of the rule"),
        ("a.1", "expected a field name after '.', got number '1'"),
        ("a.and", "expected a field name after '.', got 'and'"),
        ("x[0]", "unexpected '['; there is no indexing"),
        ('"s".upper()', "unexpected '.'; only field names can be joined by dots, there is no attribute access"),
        ("(a)(b)", "unexpected '('; only functions can be called, by name, like abs(x)"),
        ("a)", "unexpected ')' without a matching opening bracket"),
        ("a b", "expected an operator or the end of the rule, got name 'b'"),
        ("+a", "unexpected '+'; expected a value"),
        ("x ** 2", "unexpected '*'; expected a value"),
        ("tags", "'tags' alone is the whole tags document; name a key in it, like tags.depot"),
        ("reported", "'reported' alone is the whole reported document; name a key in it, like reported.soc"),
    ],
)
def test_syntax_errors(source: str, message: str) -> None:
    """Malformed rules are refused with a message saying what was expected."""
    with pytest.raises(RuleSyntaxError) as caught:
        parse(source)
    assert caught.value.message == message
