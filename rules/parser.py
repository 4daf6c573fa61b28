"""Parses the tokens of a rule into a syntax tree, enforcing the size limits.

Precedence climbing over this grammar (docs/rules-language.md has the full EBNF), loosest first:
`or`, `and`, `not`, comparisons and `in` (not chained), `+ -`, `* / %`, unary `-`.
"""

from __future__ import annotations

from typing import Final

from rules.errors import RuleSyntaxError
from rules.lexer import Token, TokenKind, tokenize
from rules.paths import resolve
from rules.settings import Limits
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
    children,
)

_OR, _AND, _NOT, _COMPARE, _SUM, _PRODUCT, _NEGATE = range(1, 8)
_BINARY: Final = {
    "or": _OR,
    "and": _AND,
    "==": _COMPARE,
    "!=": _COMPARE,
    "<": _COMPARE,
    "<=": _COMPARE,
    ">": _COMPARE,
    ">=": _COMPARE,
    "in": _COMPARE,
    "not in": _COMPARE,
    "+": _SUM,
    "-": _SUM,
    "*": _PRODUCT,
    "/": _PRODUCT,
    "%": _PRODUCT,
}
_CHAINED = "comparisons cannot be chained; join them with 'and', like 'a < b and b < c'"

DEFAULT_LIMITS: Final = Limits()


def parse(source: str, limits: Limits = DEFAULT_LIMITS) -> Expr:
    """The syntax tree of `source`. Raises `RuleSyntaxError`."""
    if len(source) > limits.max_source_length:
        line, column = _position(source, limits.max_source_length)
        raise RuleSyntaxError(
            f"rule is too long: {len(source)} characters, the limit is {limits.max_source_length}",
            line,
            column,
            source,
        )
    return _Parser(source, tokenize(source), limits).run()


def _position(source: str, index: int) -> tuple[int, int]:
    line = source.count("\n", 0, index) + 1
    return line, index - (source.rfind("\n", 0, index) + 1) + 1


class _Parser:
    def __init__(self, source: str, tokens: list[Token], limits: Limits) -> None:
        self.source = source
        self.tokens = tokens
        self.limits = limits
        self.index = 0
        self.depth = 0
        self.nodes = 0

    def run(self) -> Expr:
        first = self._peek()
        if first.kind is TokenKind.END:
            raise self._error("empty rule; write a condition, like soc < 15", first)
        tree = self._expr(_OR)
        self._expect_end()
        self._check_height(tree)
        return tree

    # -- tokens ---------------------------------------------------------------

    def _peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def _next(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def _is(self, text: str, ahead: int = 0) -> bool:
        token = self._peek(ahead)
        return token.text == text and token.kind in (TokenKind.OPERATOR, TokenKind.KEYWORD)

    def _error(self, message: str, token: Token) -> RuleSyntaxError:
        return RuleSyntaxError(message, token.line, token.column, self.source)

    def _binary_op(self) -> str | None:
        token = self._peek()
        if token.kind not in (TokenKind.OPERATOR, TokenKind.KEYWORD):
            return None
        if token.text == "not" and self._is("in", 1):
            return "not in"
        return token.text if token.text in _BINARY else None

    # -- limits ---------------------------------------------------------------

    def _count(self, token: Token) -> None:
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise self._error(f"rule is too large: more than {self.limits.max_nodes} parts", token)

    def _too_deep(self) -> str:
        return f"rule is nested too deeply: more than {self.limits.max_depth} levels"

    def _check_height(self, tree: Expr) -> None:
        heights: dict[int, int] = {}
        stack: list[tuple[Expr, bool]] = [(tree, False)]
        while stack:
            node, done = stack.pop()
            if not done:
                stack.append((node, True))
                stack.extend((child, False) for child in children(node))
                continue
            height = 1 + max((heights[id(child)] for child in children(node)), default=0)
            if height > self.limits.max_depth:
                raise RuleSyntaxError(self._too_deep(), node.line, node.column, self.source)
            heights[id(node)] = height

    # -- grammar --------------------------------------------------------------

    def _expr(self, min_prec: int) -> Expr:
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise self._error(self._too_deep(), self._peek())
        left = self._prefix()
        while True:
            op = self._binary_op()
            if op is None or _BINARY[op] < min_prec:
                break
            prec = _BINARY[op]
            token = self._peek()
            if op in ("and", "or"):
                operands = [left]
                while self._binary_op() == op:
                    self._next()
                    operands.append(self._expr(prec + 1))
                self._count(token)
                left = BoolOp(op, tuple(operands), line=token.line, column=token.column)
                continue
            self._next()
            if op == "not in":
                self._next()
            self._count(token)
            if op in ("in", "not in"):
                items = self._list(op)
                left = Membership(op == "not in", left, items, line=token.line, column=token.column)
            elif prec == _COMPARE:
                right = self._expr(prec + 1)
                left = Compare(op, left, right, line=token.line, column=token.column)
            else:
                right = self._expr(prec + 1)
                left = Binary(op, left, right, line=token.line, column=token.column)
            following = self._binary_op()
            if prec == _COMPARE and following is not None and _BINARY[following] == _COMPARE:
                raise self._error(_CHAINED, self._peek())
        self.depth -= 1
        return left

    def _prefix(self) -> Expr:
        token = self._peek()
        if self._is("not"):
            self._next()
            if self._is("in"):
                raise self._error("'not in' needs a value on its left, like x not in [1, 2]", token)
            operand = self._expr(_NOT)
        elif self._is("-"):
            self._next()
            operand = self._expr(_NEGATE)
        else:
            return self._primary()
        self._count(token)
        return Unary(token.text, operand, line=token.line, column=token.column)

    def _primary(self) -> Expr:
        token = self._next()
        line, column = token.line, token.column
        match token.kind:
            case TokenKind.NUMBER:
                self._count(token)
                return NumberLit(float(token.value or 0.0), line=line, column=column)
            case TokenKind.DURATION:
                self._count(token)
                return DurationLit(float(token.value or 0.0), token.text, line=line, column=column)
            case TokenKind.STRING:
                self._count(token)
                return StringLit(str(token.value), line=line, column=column)
            case TokenKind.KEYWORD if token.text in ("true", "false"):
                self._count(token)
                return BoolLit(token.text == "true", line=line, column=column)
            case TokenKind.KEYWORD if token.text == "null":
                self._count(token)
                return NullLit(line=line, column=column)
            case TokenKind.NAME:
                return self._name(token)
            case TokenKind.OPERATOR if token.text == "(":
                inner = self._expr(_OR)
                closing = self._peek()
                if not self._is(")"):
                    raise self._error(
                        f"expected ')' to close the '(' opened at {line}:{column}, got {closing.describe()}",
                        closing,
                    )
                self._next()
                return inner
            case TokenKind.OPERATOR if token.text == "[":
                raise self._error("a list is only allowed after 'in', like x in [1, 2]", token)
            case TokenKind.END:
                raise self._error("unexpected end of rule; expected a value", token)
            case _:
                raise self._error(f"unexpected {token.describe()}; expected a value", token)

    def _name(self, first: Token) -> Expr:
        segments = [first.text]
        while self._is("."):
            self._next()
            token = self._next()
            if token.kind is not TokenKind.NAME:
                raise self._error(f"expected a field name after '.', got {token.describe()}", token)
            segments.append(token.text)
            if len(segments) > self.limits.max_path_length:
                raise self._error(f"field path is too long: more than {self.limits.max_path_length} names", token)
        self._count(first)
        if self._is("("):
            if len(segments) > 1:
                raise self._error(
                    f"'{'.'.join(segments)}' is a field, not a function; there are no methods",
                    self._peek(),
                )
            return Call(first.text, self._arguments(first), line=first.line, column=first.column)
        try:
            source, path = resolve(segments)
        except ValueError as exc:
            raise self._error(str(exc), first) from None
        return Field(source, path, line=first.line, column=first.column)

    def _arguments(self, name: Token) -> tuple[Expr, ...]:
        self._next()  # "("
        self.depth += 1
        args: list[Expr] = []
        while not self._is(")"):
            args.append(self._expr(_OR))
            if self._is(","):
                self._next()
            elif not self._is(")"):
                token = self._peek()
                raise self._error(
                    f"expected ',' or ')' in the arguments of {name.text}(), got {token.describe()}", token
                )
        self._next()  # ")"
        self.depth -= 1
        return tuple(args)

    def _list(self, op: str) -> tuple[Expr, ...]:
        opening = self._peek()
        if not self._is("["):
            raise self._error(f"'{op}' needs a list on its right, like x {op} [1, 2]", opening)
        self._next()
        self.depth += 1
        items: list[Expr] = []
        while not self._is("]"):
            if len(items) == self.limits.max_list_length:
                raise self._error(f"list is too long: more than {self.limits.max_list_length} items", self._peek())
            items.append(self._expr(_OR))
            if self._is(","):
                self._next()
            elif not self._is("]"):
                token = self._peek()
                raise self._error(f"expected ',' or ']' in the list, got {token.describe()}", token)
        self._next()  # "]"
        self.depth -= 1
        return tuple(items)

    def _expect_end(self) -> None:
        token = self._peek()
        if token.kind is TokenKind.END:
            return
        text = token.text
        if text == ".":
            message = "unexpected '.'; only field names can be joined by dots, there is no attribute access"
        elif text == "[":
            message = "unexpected '['; there is no indexing"
        elif text == "(":
            message = "unexpected '('; only functions can be called, by name, like abs(x)"
        elif text in (")", "]"):
            message = f"unexpected '{text}' without a matching opening bracket"
        else:
            message = f"expected an operator or the end of the rule, got {token.describe()}"
        raise self._error(message, token)
