"""Alerts: list with filters, read one, acknowledge, clear by hand."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK

from api.auth import Caller, audit, ensure_fleet, requires
from api.deps import ApiDeps, Deps
from api.problems import Problem, problem_response
from api.rules import engine_of, parse_when
from kernel import InvalidPayload
from rules import Alert, AlertNotOpen, AlertQuery, AlertState, AlertView, alert_view
from security import Permission, PrincipalKind

AlertId = Annotated[str, PathParameter(max_length=64, description="Alert id")]


class AlertList(msgspec.Struct):
    items: list[AlertView]


class AlertAction(msgspec.Struct, forbid_unknown_fields=True):
    """Who acknowledges or clears the alert, and why."""

    # Recorded as given only in development mode; otherwise the authenticated user's name is recorded.
    user: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    note: Annotated[str, msgspec.Meta(max_length=1024)] | None = None


def _conflict(request: Request[Any, Any, Any], exc: AlertNotOpen) -> Response[Problem]:
    problem = Problem("https://fleethub.dev/problems/alert-not-open", "Alert not open", 409, str(exc))
    return problem_response(request, problem)


def _by(principal: Caller, data: AlertAction) -> str:
    if principal.kind is PrincipalKind.DEV:
        return data.user or "dev"
    return principal.name


async def _visible_alert(deps: ApiDeps, principal: Caller, alert_id: str) -> Alert:
    alert = await engine_of(deps).get_alert(alert_id)
    ensure_fleet(principal, alert.fleet, f"alert {alert_id!r}")
    return alert


class AlertsController(Controller):
    path = "/api/v1/alerts"
    tags = ["alerts"]  # noqa: RUF012 - Litestar reads this class attribute

    @get("/", summary="List alerts, newest first", opt=requires(Permission.ALERTS_READ))
    async def list_alerts(
        self,
        deps: Deps,
        principal: Caller,
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
            fleets=principal.fleet_filter(),
        )
        return AlertList(items=[alert_view(a) for a in await engine.query_alerts(query)])

    @get("/{alert_id:str}", summary="Read an alert", opt=requires(Permission.ALERTS_READ))
    async def get_alert(self, deps: Deps, principal: Caller, alert_id: AlertId) -> AlertView:
        return alert_view(await _visible_alert(deps, principal, alert_id))

    @post(
        "/{alert_id:str}/ack",
        summary="Acknowledge an active alert",
        status_code=HTTP_200_OK,
        opt=requires(Permission.ALERTS_ACK),
    )
    async def acknowledge(
        self,
        request: Request[Any, Any, Any],
        deps: Deps,
        principal: Caller,
        alert_id: AlertId,
        data: JSONBody[AlertAction],
    ) -> Response[Any]:
        found = await _visible_alert(deps, principal, alert_id)
        try:
            alert = await engine_of(deps).acknowledge(alert_id, _by(principal, data), data.note)
        except AlertNotOpen as exc:
            return _conflict(request, exc)
        detail = {"rule": alert.rule, "note": data.note, "by": _by(principal, data)}
        await audit(
            request, deps, "alert.ack", vehicle_id=alert.vehicle_id, fleet=found.fleet, target=alert_id, detail=detail
        )
        return Response(alert_view(alert))

    @post(
        "/{alert_id:str}/clear",
        summary="Clear an open alert by hand",
        status_code=HTTP_200_OK,
        opt=requires(Permission.ALERTS_ACK),
    )
    async def clear(
        self,
        request: Request[Any, Any, Any],
        deps: Deps,
        principal: Caller,
        alert_id: AlertId,
        data: JSONBody[AlertAction],
    ) -> Response[Any]:
        found = await _visible_alert(deps, principal, alert_id)
        try:
            alert = await engine_of(deps).clear(alert_id, _by(principal, data), data.note)
        except AlertNotOpen as exc:
            return _conflict(request, exc)
        detail = {"rule": alert.rule, "note": data.note, "by": _by(principal, data)}
        await audit(
            request, deps, "alert.clear", vehicle_id=alert.vehicle_id, fleet=found.fleet, target=alert_id, detail=detail
        )
        return Response(alert_view(alert))
