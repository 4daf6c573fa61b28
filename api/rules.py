"""Rules: list, read, create or replace, delete, validate, and backtest on stored history."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.exceptions import ServiceUnavailableException
from litestar.params import JSONBody, PathParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from api.auth import Caller, audit, ensure_fleet, requires, vehicle_fleet
from api.deps import ApiDeps, Deps
from api.problems import Problem, problem_response
from kernel import InvalidPayload, parse_time
from rules import BacktestResult, CompileProblem, RuleBody, RuleConfigError, RuleDefinition, RuleInvalid, RulesEngine
from security import Permission

RuleName = Annotated[str, PathParameter(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Rule name")]


def engine_of(deps: ApiDeps) -> RulesEngine:
    if deps.rules is None:
        raise ServiceUnavailableException("the rules engine is off (rules.enabled = false)")
    return deps.rules


def parse_when(value: str | float | None, name: str) -> float | None:
    """An RFC 3339 time or epoch seconds from a query or body, or None."""
    if value is None:
        return None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    try:
        return parse_time(value, field=name)
    except InvalidPayload as exc:
        raise InvalidPayload("bad_query", exc.detail) from None


class RuleList(msgspec.Struct):
    items: list[RuleDefinition]


class ValidationResult(msgspec.Struct):
    valid: bool
    errors: list[CompileProblem]


class BacktestRequest(msgspec.Struct, forbid_unknown_fields=True):
    vehicle_id: str
    from_: str | float | None = msgspec.field(default=None, name="from")
    to: str | float | None = None
    # Test this definition instead of the stored one (it need not be saved).
    rule: RuleBody | None = None


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
    async def list_rules(self, deps: Deps) -> RuleList:
        return RuleList(items=engine_of(deps).list_rules())

    @get("/{name:str}", summary="Read a rule", opt=requires(Permission.RULES_READ))
    async def get_rule(self, deps: Deps, name: RuleName) -> RuleDefinition:
        return engine_of(deps).get_rule(name)

    @put(
        "/{name:str}",
        summary="Create or replace a rule; 422 lists compile errors with line and column",
        opt=requires(Permission.RULES_WRITE),
    )
    async def put_rule(
        self, request: Request[Any, Any, Any], deps: Deps, name: RuleName, data: JSONBody[RuleBody]
    ) -> Response[Any]:
        engine = engine_of(deps)
        try:
            definition = data.named(name)
            created = await engine.put_rule(definition)
        except RuleInvalid as exc:
            return invalid_rule(request, exc)
        except RuleConfigError as exc:
            return invalid_rule(request, RuleInvalid(name, [CompileProblem("name", str(exc))]))
        detail = {"created": created, "definition": msgspec.to_builtins(definition)}
        await audit(request, deps, "rule.put", target=name, detail=detail)
        return Response(definition, status_code=HTTP_201_CREATED if created else HTTP_200_OK)

    @delete("/{name:str}", summary="Delete a rule; its open alerts are cleared", opt=requires(Permission.RULES_WRITE))
    async def delete_rule(self, request: Request[Any, Any, Any], deps: Deps, name: RuleName) -> None:
        await engine_of(deps).delete_rule(name)
        await audit(request, deps, "rule.delete", target=name)

    @post(
        "/validate",
        summary="Check a rule without saving it",
        status_code=HTTP_200_OK,
        opt=requires(Permission.RULES_READ),
    )
    async def validate(self, deps: Deps, data: JSONBody[dict[str, Any]]) -> ValidationResult:
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
        data: JSONBody[BacktestRequest],
    ) -> Response[Any]:
        engine = engine_of(deps)
        # The history replayed is the vehicle's: another fleet's vehicle is as if absent.
        ensure_fleet(principal, await vehicle_fleet(deps, data.vehicle_id), f"vehicle '{data.vehicle_id}'")
        try:
            definition = data.rule.named(name) if data.rule is not None else None
            result: BacktestResult = await engine.backtest(
                name,
                data.vehicle_id,
                parse_when(data.from_, "from"),
                parse_when(data.to, "to"),
                definition=definition,
            )
        except RuleInvalid as exc:
            return invalid_rule(request, exc)
        return Response(result)
