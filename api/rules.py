"""Rules: list, read, create or replace, delete, validate, and backtest on stored history."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.exceptions import ServiceUnavailableException
from litestar.openapi import ResponseSpec
from litestar.params import PathParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from api.auth import Caller, actor_of, ensure_fleet, requires, vehicle_fleet
from api.deps import ApiDeps, Deps
from api.examples import body
from api.paging import DEFAULT_LIMIT, Cursor, Limit, page_of, page_size
from api.problems import Problem, problem_response
from api.times import query_time
from rules import BacktestResult, CompileProblem, RuleBody, RuleConfigError, RuleDefinition, RuleInvalid, RulesEngine
from security import Permission

RuleName = Annotated[str, PathParameter(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Rule name")]


def engine_of(deps: ApiDeps) -> RulesEngine:
    if deps.rules is None:
        raise ServiceUnavailableException("the rules engine is off (rules.enabled = false)")
    return deps.rules


class RuleList(msgspec.Struct, omit_defaults=True):
    items: list[RuleDefinition]
    next_cursor: str | None = None


class ValidationResult(msgspec.Struct):
    valid: bool
    errors: list[CompileProblem]


class BacktestRequest(msgspec.Struct, forbid_unknown_fields=True):
    vehicle_id: str
    from_: str | float | None = msgspec.field(default=None, name="from")
    to: str | float | None = None
    # Test this definition instead of the stored one (it need not be saved).
    rule: RuleBody | None = None


_RULE = {
    "when": "battery.temp_c > 60",
    "for": "30s",
    "severity": "critical",
    "message": "Battery at {battery.temp_c} C",
    "clear_when": "battery.temp_c < 55",
}
_RULE_EXAMPLES = body(
    ("overheating", "Raise after 30 s above 60 C, clear below 55 C", _RULE),
    (
        "left-depot",
        "Vehicles of one fleet leaving a zone",
        {
            "when": 'left("depot")',
            "severity": "warning",
            "message": "{vehicle_id} left the depot",
            "selector": {"fleet": "default"},
        },
    ),
)
_VALIDATE_EXAMPLES = body(
    ("valid", "A definition that compiles", {"name": "hot", **_RULE}),
    ("invalid", "A definition with a syntax error (answered with line and column)", {"when": "soc <"}),
)
_BACKTEST_EXAMPLES = body(
    (
        "stored",
        "The stored rule over one day of a vehicle",
        {"vehicle_id": "veh-0007", "from": "2026-11-23T00:00:00Z", "to": "2026-11-24T00:00:00Z"},
    ),
    ("draft", "An unsaved definition over the last day", {"vehicle_id": "veh-0007", "rule": {"when": "soc < 15"}}),
)


def invalid_rule(request: Request[Any, Any, Any], exc: RuleInvalid) -> Response[Problem]:
    problem = Problem(
        "https://fleethub.dev/problems/invalid-rule",
        "Invalid rule",
        422,
        str(exc),
        errors=[msgspec.to_builtins(p) for p in exc.problems],
    )
    return problem_response(request, problem)


class RulesController(Controller):
    path = "/api/v1/rules"
    tags = ["rules"]  # noqa: RUF012 - Litestar reads this class attribute

    @get("/", summary="List rules", opt=requires(Permission.RULES_READ))
    async def list_rules(self, deps: Deps, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> RuleList:
        rules = engine_of(deps).list_rules()
        items, next_cursor = page_of(rules, lambda r: r.name, page_size(limit, deps.max_page_size), cursor)
        return RuleList(items, next_cursor)

    @get("/{name:str}", summary="Read a rule", opt=requires(Permission.RULES_READ))
    async def get_rule(self, deps: Deps, name: RuleName) -> RuleDefinition:
        return engine_of(deps).get_rule(name)

    @put(
        "/{name:str}",
        summary="Create or replace a rule; 422 lists compile errors with line and column",
        responses={201: ResponseSpec(RuleDefinition, generate_examples=False, description="Created")},
        opt=requires(Permission.RULES_WRITE),
    )
    async def put_rule(
        self, request: Request[Any, Any, Any], deps: Deps, name: RuleName, data: Annotated[RuleBody, _RULE_EXAMPLES]
    ) -> Response[Any]:
        engine = engine_of(deps)
        try:
            definition = data.named(name)
            created = await engine.put_rule(definition, actor=actor_of(request))
        except RuleInvalid as exc:
            return invalid_rule(request, exc)
        except RuleConfigError as exc:
            return invalid_rule(request, RuleInvalid(name, [CompileProblem("name", str(exc))]))
        return Response(definition, status_code=HTTP_201_CREATED if created else HTTP_200_OK)

    @delete("/{name:str}", summary="Delete a rule; its open alerts are cleared", opt=requires(Permission.RULES_WRITE))
    async def delete_rule(self, request: Request[Any, Any, Any], deps: Deps, name: RuleName) -> None:
        await engine_of(deps).delete_rule(name, actor=actor_of(request))

    @post(
        "/validate",
        summary="Check a rule without saving it",
        status_code=HTTP_200_OK,
        opt=requires(Permission.RULES_READ),
    )
    async def validate(self, deps: Deps, data: Annotated[dict[str, Any], _VALIDATE_EXAMPLES]) -> ValidationResult:
        engine = engine_of(deps)
        body = dict(data)
        name = body.pop("name", "draft")
        try:
            definition = msgspec.convert(body, RuleBody).named(name if isinstance(name, str) else "")
        except (msgspec.ValidationError, RuleConfigError) as exc:
            return ValidationResult(valid=False, errors=[CompileProblem("definition", str(exc))])
        errors = engine.validate(definition)
        return ValidationResult(valid=not errors, errors=errors)

    @post(
        "/{name:str}/test",
        summary="Backtest a rule on one vehicle's stored history",
        status_code=HTTP_200_OK,
        opt=requires(Permission.RULES_READ),
    )
    async def backtest(
        self,
        request: Request[Any, Any, Any],
        deps: Deps,
        principal: Caller,
        name: RuleName,
        data: Annotated[BacktestRequest, _BACKTEST_EXAMPLES],
    ) -> Response[Any]:
        engine = engine_of(deps)
        # The history replayed is the vehicle's: another fleet's vehicle is as if absent.
        ensure_fleet(principal, await vehicle_fleet(deps, data.vehicle_id), f"vehicle '{data.vehicle_id}'")
        try:
            definition = data.rule.named(name) if data.rule is not None else None
            result: BacktestResult = await engine.backtest(
                name,
                data.vehicle_id,
                query_time(data.from_, "from"),
                query_time(data.to, "to"),
                definition=definition,
            )
        except RuleInvalid as exc:
            return invalid_rule(request, exc)
        return Response(result)
