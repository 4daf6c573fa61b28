"""Alerts: list with filters, read one, acknowledge, clear by hand."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK

from api.deps import Deps
from api.problems import Problem, problem_response
from api.rules import engine_of, parse_when
from rules.alerts import AlertQuery, AlertState, AlertView, view
from rules.evaluator import AlertNotOpen
from twin import InvalidPayload

AlertId = Annotated[str, PathParameter(max_length=64, description="Alert id")]


class AlertList(msgspec.Struct):
    items: list[AlertView]


class AlertAction(msgspec.Struct, forbid_unknown_fields=True):
    """Who acknowledges or clears the alert, and why."""

    user: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    note: Annotated[str, msgspec.Meta(max_length=1024)] | None = None


def _conflict(request: Request[Any, Any, Any], exc: AlertNotOpen) -> Response[Problem]:
    problem = Problem("https://fleethub.dev/problems/alert-not-open", "Alert not open", 409, str(exc))
    return problem_response(request, problem)


class AlertsController(Controller):
    path = "/api/v1/alerts"
    tags = ["alerts"]  # noqa: RUF012 - Litestar reads this class attribute

    @get("/", summary="List alerts, newest first")
    async def list_alerts(
        self,
        deps: Deps,
        state_: Annotated[
            str | None,
            QueryParameter(name="state", description="active, acknowledged, cleared, or open (active or acknowledged)"),
        ] = None,
        severity: Annotated[str | None, QueryParameter()] = None,
        rule: Annotated[str | None, QueryParameter()] = None,
        vehicle: Annotated[str | None, QueryParameter(description="Vehicle id")] = None,
        from_: Annotated[
            str | None, QueryParameter(name="from", description="Raised at or after: RFC 3339 or epoch seconds")
        ] = None,
        to: Annotated[str | None, QueryParameter(description="Raised before: RFC 3339 or epoch seconds")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=10_000)] = 100,
    ) -> AlertList:
        engine = engine_of(deps)
        state = state_
        wanted: AlertState | None = None
        if state not in (None, "open"):
            try:
                wanted = AlertState(state)
            except ValueError:
                raise InvalidPayload(
                    "bad_query", f"state must be active, acknowledged, cleared or open, got {state!r}"
                ) from None
        query = AlertQuery(
            state=wanted,
            open_only=state == "open",
            severity=severity,
            rule=rule,
            vehicle_id=vehicle,
            start=parse_when(from_, "from"),
            end=parse_when(to, "to"),
            limit=min(limit, deps.max_page_size),
        )
        return AlertList(items=[view(a) for a in await engine.query_alerts(query)])

    @get("/{alert_id:str}", summary="Read an alert")
    async def get_alert(self, deps: Deps, alert_id: AlertId) -> AlertView:
        return view(await engine_of(deps).get_alert(alert_id))

    @post("/{alert_id:str}/ack", summary="Acknowledge an active alert", status_code=HTTP_200_OK)
    async def acknowledge(
        self, request: Request[Any, Any, Any], deps: Deps, alert_id: AlertId, data: JSONBody[AlertAction]
    ) -> Response[Any]:
        try:
            alert = await engine_of(deps).acknowledge(alert_id, data.user, data.note)
        except AlertNotOpen as exc:
            return _conflict(request, exc)
        return Response(view(alert))

    @post("/{alert_id:str}/clear", summary="Clear an open alert by hand", status_code=HTTP_200_OK)
    async def clear(
        self, request: Request[Any, Any, Any], deps: Deps, alert_id: AlertId, data: JSONBody[AlertAction]
    ) -> Response[Any]:
        try:
            alert = await engine_of(deps).clear(alert_id, data.user, data.note)
        except AlertNotOpen as exc:
            return _conflict(request, exc)
        return Response(view(alert))
