"""The alert rule language: compile a condition once, evaluate it on every twin update.

    >>> from rules import compile_rule, MemoryContext
    >>> rule = compile_rule("soc < 15 and not charging")
    >>> rule.evaluate(MemoryContext(reported={"soc": 12, "charging": False}))
    True
    >>> sorted(rule.fields)
    [('charging',), ('soc',)]

The language is documented for users in `rules/LANGUAGE.md`: grammar, types, the
missing-value rule, functions, zones, message templates and limits. Compiling never
runs the rule's text as Python: it is lexed, parsed into a tree, type-checked and
turned into closures. Evaluating is pure, does no I/O, and never raises on twin data.
"""

from rules.compiler import NO_ZONES, CompiledExpr, Compiler, compile_rule
from rules.context import MISSING, EvalContext, Missing, Path, Source
from rules.errors import RuleConfigError, RuleError, RuleSyntaxError, RuleTypeError
from rules.functions import FUNCTIONS, Signature
from rules.memory_context import MemoryContext
from rules.message import MessageTemplate, Placeholder, format_value, parse_message, render_message
from rules.settings import Limits, Position
from rules.zones import Circle, LatLon, Polygon, Zone, ZoneSet

__all__ = [
    "FUNCTIONS",
    "MISSING",
    "NO_ZONES",
    "Circle",
    "CompiledExpr",
    "Compiler",
    "EvalContext",
    "LatLon",
    "Limits",
    "MemoryContext",
    "MessageTemplate",
    "Missing",
    "Path",
    "Placeholder",
    "Polygon",
    "Position",
    "RuleConfigError",
    "RuleError",
    "RuleSyntaxError",
    "RuleTypeError",
    "Signature",
    "Source",
    "Zone",
    "ZoneSet",
    "compile_rule",
    "format_value",
    "parse_message",
    "render_message",
]
