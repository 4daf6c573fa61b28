"""Remote commands: one vehicle's commands, and fleet jobs that roll a command out at a rate.

Handlers only translate: the command service owns states, delivery and storage. Who
asked is the authenticated principal (in development mode, `X-Requested-By`, else
"anonymous") and the peer address. Sending and job control need `commands:send`,
reading `commands:read`; a job's selector is held to the caller's fleets, and jobs of
other fleets are as absent as other fleets' vehicles.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.exceptions import ServiceUnavailableException
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from api.auth import Caller, actor_of, ensure_fleet, remote_of, requires
from api.deps import ApiDeps, Deps
from api.examples import body
from api.paging import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor, page_size
from api.problems import Problem, problem_response
from api.times import query_time
from api.vehicles import VehicleId
from commands import (
    CommandClosed,
    CommandQuery,
    CommandService,
    CommandState,
    CommandView,
    JobReport,
    JobSelector,
    command_view,
)
from kernel import InvalidPayload, NotFound
from rules import RuleSyntaxError
from security import Permission, Principal, PrincipalKind

CommandId = Annotated[str, PathParameter(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Command id")]
JobId = Annotated[str, PathParameter(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Job id")]
RequestedBy = Annotated[
    str | None, HeaderParameter(name="X-Requested-By", description="Who asks (recorded as requested_by)")
]
Wait = Annotated[
    str | None,
    QueryParameter(description="Wait up to this long for the vehicle's result: `10s`, `500ms`, `1m` or seconds"),
]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}
_MAX_REQUESTED_BY = 128


class CommandRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    # Seconds until the command expires if the vehicle has not answered (default: commands.default_ttl_s).
    ttl_s: float | None = None
    # A condition in the rules language, checked on the twin just before sending.
    precondition: str | None = None
    # A repeat with the same key returns the command the first request created.
    idempotency_key: str | None = None


class JobRequest(msgspec.Struct, forbid_unknown_fields=True):
    selector: JobSelector
    name: str
    # Vehicles per second that get the command.
    rate: float
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    ttl_s: float | None = None
    precondition: str | None = None


class CommandPage(msgspec.Struct, omit_defaults=True):
    items: list[CommandView]
    next_cursor: str | None = None


class JobPage(msgspec.Struct, omit_defaults=True):
    items: list[JobReport]
    next_cursor: str | None = None


_COMMAND_EXAMPLES = body(
    ("locate", "Ask where the vehicle is", {"name": "locate"}),
    (
        "unlock",
        "Unlock only when parked, within 5 minutes, once",
        {
            "name": "unlock",
            "precondition": "speed == 0 and not ignition",
            "ttl_s": 300,
            "idempotency_key": "ticket-4711",
        },
    ),
    ("honk", "A command with arguments", {"name": "honk", "args": {"times": 2}}),
)
_JOB_EXAMPLES = body(
    (
        "charge-limit",
        "Set a charge limit on a fleet's charged vehicles, five a second",
        {
            "selector": {"fleet": "default", "filter": "soc > 20"},
            "name": "set_charge_limit",
            "args": {"limit": 80},
            "rate": 5,
        },
    ),
    (
        "lock-depot",
        "Lock every vehicle tagged depot=north, one a second",
        {"selector": {"tags": {"depot": "north"}}, "name": "lock", "rate": 1, "ttl_s": 3600},
    ),
)


def service_of(deps: ApiDeps) -> CommandService:
    if deps.commands is None:
        raise ServiceUnavailableException("the command service is not running")
    return deps.commands


def parse_wait(value: str | None, limit: float) -> float | None:
    if value is None:
        return None
    match = _DURATION.match(value.strip())
    if match is None:
        raise InvalidPayload("bad_query", f"wait must be a duration like 10s, 500ms or 1m, got {value!r}")
    seconds = float(match.group(1)) * _UNIT[match.group(2)]
    if seconds > limit:
        raise InvalidPayload("bad_query", f"wait must be at most {limit:g}s (commands.max_wait_s), got {value!r}")
    return seconds


def _who(principal: Principal, requested_by: str | None, request: Request[Any, Any, Any]) -> tuple[str, str]:
    if principal.kind is PrincipalKind.DEV:
        # Nobody is authenticated in development mode; the caller may say who they are.
        who = (requested_by or "").strip()[:_MAX_REQUESTED_BY] or "anonymous"
    else:
        who = principal.actor
    return who, remote_of(request)


def _scoped_selector(principal: Principal, selector: JobSelector) -> JobSelector:
    """A job reaches only fleets the caller sees: its selector names one of them."""
    if principal.all_fleets:
        return selector
    if selector.fleet is None:
        if len(principal.fleets) != 1:
            raise InvalidPayload(
                "bad_selector", f"selector.fleet is required: one of {', '.join(sorted(principal.fleets))}"
            )
        return msgspec.structs.replace(selector, fleet=next(iter(principal.fleets)))
    if not principal.sees(selector.fleet):
        raise NotFound(f"fleet '{selector.fleet}' not found")
    return selector


async def _visible_job(deps: ApiDeps, principal: Principal, job_id: str) -> JobReport:
    found = await service_of(deps).job(job_id, outcomes=False)
    ensure_fleet(principal, found.selector.fleet, f"job '{job_id}'")
    return found


async def _refusing(request: Request[Any, Any, Any], call: Callable[[], Any]) -> Any:
    """Run `call`; a bad condition becomes 422 with its caret, a closed command 409."""
    try:
        return await call()
    except RuleSyntaxError as exc:
        problem = Problem(
            "https://fleethub.dev/problems/invalid-condition",
            "Invalid condition",
            422,
            str(exc),
            reason="bad_condition",
            errors=[exc.as_dict()],
        )
        return problem_response(request, problem)
    except CommandClosed as exc:
        return problem_response(request, Problem("https://fleethub.dev/problems/conflict", "Conflict", 409, str(exc)))


def _location(vehicle_id: str, command_id: str) -> dict[str, str]:
    return {"Location": f"/api/v1/vehicles/{vehicle_id}/commands/{command_id}"}


class VehicleCommandsController(Controller):
    path = "/api/v1/vehicles/{vehicle_id:str}/commands"
    tags = ["commands"]  # noqa: RUF012 - Litestar reads this class attribute

    @post(
        "/",
        summary="Send a command to a vehicle (202, or 200 with the result when `wait` sees it)",
        status_code=HTTP_202_ACCEPTED,
        responses={
            200: ResponseSpec(CommandView, generate_examples=False, description="The command finished within `wait`")
        },
        opt=requires(Permission.COMMANDS_SEND),
    )
    async def create(
        self,
        deps: Deps,
        principal: Caller,
        request: Request[Any, Any, Any],
        vehicle_id: VehicleId,
        data: Annotated[CommandRequest, _COMMAND_EXAMPLES],
        wait: Wait = None,
        requested_by: RequestedBy = None,
    ) -> Response[Any]:
        service = service_of(deps)
        timeout = parse_wait(wait, service.settings.max_wait_s)
        who, source = _who(principal, requested_by, request)

        async def run() -> Response[Any]:
            command, created = await service.create(
                vehicle_id,
                data.name,
                data.args,
                ttl_s=data.ttl_s,
                precondition=data.precondition,
                idempotency_key=data.idempotency_key,
                requested_by=who,
                source=source,
                actor=actor_of(request),
            )
            if timeout is not None:
                command = await service.wait(command.id, timeout)
            headers = _location(vehicle_id, command.id)
            if not created:
                headers["Idempotent-Replay"] = "true"
            status = HTTP_202_ACCEPTED if command.open else HTTP_200_OK
            return Response(command_view(command), status_code=status, headers=headers)

        result: Response[Any] = await _refusing(request, run)
        return result

    @get("/", summary="A vehicle's commands, newest first", opt=requires(Permission.COMMANDS_READ))
    async def list_commands(
        self,
        deps: Deps,
        vehicle_id: VehicleId,
        state_: Annotated[
            list[CommandState] | None, QueryParameter(name="state", description="One or more states")
        ] = None,
        name: Annotated[str | None, QueryParameter()] = None,
        job: Annotated[str | None, QueryParameter(description="Only commands of this fleet job")] = None,
        from_: Annotated[str | None, QueryParameter(name="from", description="Created at or after")] = None,
        to: Annotated[str | None, QueryParameter(description="Created before")] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> CommandPage:
        limit = page_size(limit, deps.max_page_size)
        query = CommandQuery(
            vehicle_id=vehicle_id,
            job_id=job,
            states=tuple(state_ or ()),
            name=name,
            since=query_time(from_, "from"),
            until=query_time(to, "to"),
            before=decode_cursor(cursor, str)[0] if cursor is not None else None,
            limit=limit + 1,
        )
        found = await service_of(deps).query(query)
        more = len(found) > limit
        found = found[:limit]
        return CommandPage([command_view(c) for c in found], encode_cursor(found[-1].id) if more else None)

    @get("/{command_id:str}", summary="One command with its state history", opt=requires(Permission.COMMANDS_READ))
    async def get_command(
        self, deps: Deps, vehicle_id: VehicleId, command_id: CommandId, wait: Wait = None
    ) -> CommandView:
        service = service_of(deps)
        timeout = parse_wait(wait, service.settings.max_wait_s)
        command = await service.get(command_id)
        if command.vehicle_id != vehicle_id:
            raise NotFound(f"command '{command_id}' of vehicle '{vehicle_id}' not found")
        if timeout is not None:
            command = await service.wait(command_id, timeout)
        return command_view(command)

    @delete(
        "/{command_id:str}",
        status_code=HTTP_200_OK,
        summary="Cancel a queued or unanswered command",
        opt=requires(Permission.COMMANDS_SEND),
    )
    async def cancel(
        self,
        deps: Deps,
        principal: Caller,
        request: Request[Any, Any, Any],
        vehicle_id: VehicleId,
        command_id: CommandId,
        requested_by: RequestedBy = None,
    ) -> Response[Any]:
        who, _ = _who(principal, requested_by, request)

        async def run() -> Response[Any]:
            cancelled = await service_of(deps).cancel(vehicle_id, command_id, by=who, actor=actor_of(request))
            return Response(command_view(cancelled))

        result: Response[Any] = await _refusing(request, run)
        return result


class FleetCommandsController(Controller):
    path = "/api/v1/commands"
    tags = ["commands"]  # noqa: RUF012 - Litestar reads this class attribute

    @post(
        "/",
        summary="Roll a command out to the vehicles a selector names, at a rate (a job)",
        status_code=HTTP_202_ACCEPTED,
        opt=requires(Permission.COMMANDS_SEND),
    )
    async def create_job(
        self,
        deps: Deps,
        principal: Caller,
        request: Request[Any, Any, Any],
        data: Annotated[JobRequest, _JOB_EXAMPLES],
        requested_by: RequestedBy = None,
    ) -> Response[Any]:
        service = service_of(deps)
        who, source = _who(principal, requested_by, request)
        selector = _scoped_selector(principal, data.selector)

        async def run() -> Response[Any]:
            job = await service.create_job(
                selector,
                data.name,
                data.args,
                rate=data.rate,
                ttl_s=data.ttl_s,
                precondition=data.precondition,
                requested_by=who,
                source=source,
                actor=actor_of(request),
            )
            body = await service.job(job.id, outcomes=False)
            return Response(
                body, status_code=HTTP_202_ACCEPTED, headers={"Location": f"/api/v1/commands/jobs/{job.id}"}
            )

        result: Response[Any] = await _refusing(request, run)
        return result

    @get("/jobs", summary="Fleet jobs, newest first", opt=requires(Permission.COMMANDS_READ))
    async def list_jobs(
        self,
        deps: Deps,
        principal: Caller,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> JobPage:
        limit = page_size(limit, deps.max_page_size)
        before = decode_cursor(cursor, str)[0] if cursor is not None else None
        found = await service_of(deps).jobs(limit=limit + 1, before=before)
        more = len(found) > limit
        found = found[:limit]
        # The cursor follows every job read, so a page of other fleets' jobs still moves on.
        next_cursor = encode_cursor(found[-1].id) if more else None
        return JobPage([j for j in found if principal.sees(j.selector.fleet)], next_cursor)

    @get(
        "/jobs/{job_id:str}",
        summary="A job: progress counts and, by default, every vehicle's outcome",
        opt=requires(Permission.COMMANDS_READ),
    )
    async def get_job(
        self,
        deps: Deps,
        principal: Caller,
        job_id: JobId,
        outcomes: Annotated[bool, QueryParameter(description="Include per-vehicle outcomes")] = True,
    ) -> JobReport:
        await _visible_job(deps, principal, job_id)
        return await service_of(deps).job(job_id, outcomes=outcomes)

    @post(
        "/jobs/{job_id:str}/pause",
        status_code=HTTP_200_OK,
        summary="Stop sending to further vehicles",
        opt=requires(Permission.COMMANDS_SEND),
    )
    async def pause(
        self,
        deps: Deps,
        principal: Caller,
        request: Request[Any, Any, Any],
        job_id: JobId,
        requested_by: RequestedBy = None,
    ) -> Response[Any]:
        return await _change_job(deps, principal, request, job_id, requested_by, "pause")

    @post(
        "/jobs/{job_id:str}/resume",
        status_code=HTTP_200_OK,
        summary="Carry on sending",
        opt=requires(Permission.COMMANDS_SEND),
    )
    async def resume(
        self,
        deps: Deps,
        principal: Caller,
        request: Request[Any, Any, Any],
        job_id: JobId,
        requested_by: RequestedBy = None,
    ) -> Response[Any]:
        return await _change_job(deps, principal, request, job_id, requested_by, "resume")

    @post(
        "/jobs/{job_id:str}/cancel",
        status_code=HTTP_200_OK,
        summary="Stop the job and cancel its waiting commands",
        opt=requires(Permission.COMMANDS_SEND),
    )
    async def cancel(
        self,
        deps: Deps,
        principal: Caller,
        request: Request[Any, Any, Any],
        job_id: JobId,
        requested_by: RequestedBy = None,
    ) -> Response[Any]:
        return await _change_job(deps, principal, request, job_id, requested_by, "cancel")


async def _change_job(
    deps: ApiDeps,
    principal: Principal,
    request: Request[Any, Any, Any],
    job_id: str,
    requested_by: str | None,
    action: Literal["pause", "resume", "cancel"],
) -> Response[Any]:
    """Pause, resume or cancel a job the caller sees; the service audits it with the change."""
    await _visible_job(deps, principal, job_id)
    who, _ = _who(principal, requested_by, request)
    service = service_of(deps)
    change = {"pause": service.pause_job, "resume": service.resume_job, "cancel": service.cancel_job}[action]

    async def respond() -> Response[Any]:
        # Explicit: a Response without a status leaves it None until Litestar sends it.
        return Response(await change(job_id, by=who, actor=actor_of(request)), status_code=HTTP_200_OK)

    result: Response[Any] = await _refusing(request, respond)
    return result
