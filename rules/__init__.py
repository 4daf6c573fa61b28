"""The alert rule language: compile a condition once, evaluate it on every twin update.

    >>> from rules import compile_rule, MemoryContext
    >>> rule = compile_rule("soc < 15 and not charging")
    >>> rule.evaluate(MemoryContext(reported={"soc": 12, "charging": False}))
    True
    >>> sorted(rule.fields)
    [('charging',), ('soc',)]

The language is documented for users in `docs/rules-language.md`: grammar, types, the
missing-value rule, functions, zones, message templates and limits. Compiling never
runs the rule's text as Python: it is lexed, parsed into a tree, type-checked and
turned into closures. Evaluating is pure, does no I/O, and never raises on twin data.
"""

from rules.alerts import Alert, AlertEventKind, AlertQuery, AlertState, AlertView, alert_view
from rules.backtest import BacktestEvent, BacktestResult
from rules.compiler import NO_ZONES, CompiledExpr, Compiler, compile_rule
from rules.context import MISSING, EvalContext, Missing, Path, Source
from rules.definitions import (
    CompileProblem,
    RuleBody,
    RuleDefinition,
    RuleInvalid,
    Severity,
    load_rules_file,
    parse_rules_toml,
)
from rules.engine import EngineOptions, RulesEngine, TooManyRules, TwinSource
from rules.errors import RuleConfigError, RuleError, RuleSyntaxError, RuleTypeError
from rules.evaluator import AlertNotOpen
from rules.functions import FUNCTIONS, Signature
from rules.geo import contains
from rules.memory_context import MemoryContext
from rules.message import MessageTemplate, Placeholder, format_value, parse_message, render_message
from rules.preconditions import RulePreconditions
from rules.settings import Limits, Position
from rules.stores import (
    MemoryRulesStore,
    PendingTimer,
    RulesStore,
    RulesWrite,
    SqlRulesStore,
    TimerKind,
    rules_store,
)
from rules.zones import Circle, LatLon, Polygon, Zone, ZoneSet

__all__ = [
    "FUNCTIONS",
    "MISSING",
    "NO_ZONES",
    "Alert",
    "AlertEventKind",
    "AlertNotOpen",
    "AlertQuery",
    "AlertState",
    "AlertView",
    "BacktestEvent",
    "BacktestResult",
    "Circle",
    "CompileProblem",
    "CompiledExpr",
    "Compiler",
    "EngineOptions",
    "EvalContext",
    "LatLon",
    "Limits",
    "MemoryContext",
    "MemoryRulesStore",
    "MessageTemplate",
    "Missing",
    "Path",
    "PendingTimer",
    "Placeholder",
    "Polygon",
    "Position",
    "RuleBody",
    "RuleConfigError",
    "RuleDefinition",
    "RuleError",
    "RuleInvalid",
    "RulePreconditions",
    "RuleSyntaxError",
    "RuleTypeError",
    "RulesEngine",
    "RulesStore",
    "RulesWrite",
    "Severity",
    "Signature",
    "Source",
    "SqlRulesStore",
    "TimerKind",
    "TooManyRules",
    "TwinSource",
    "Zone",
    "ZoneSet",
    "alert_view",
    "compile_rule",
    "contains",
    "format_value",
    "load_rules_file",
    "parse_message",
    "parse_rules_toml",
    "render_message",
    "rules_store",
]
