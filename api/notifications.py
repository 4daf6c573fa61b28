"""Notifications: channels per fleet, personal subscriptions, deliveries and the dead-letter list."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.exceptions import ServiceUnavailableException
from litestar.openapi import ResponseSpec
from litestar.params import PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED

from api.auth import Caller, actor_of, ensure_fleet, requires
from api.deps import ApiDeps, Deps
from api.examples import body
from api.paging import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor, page_of, page_size
from api.times import rfc3339
from kernel import InvalidPayload, NotFound, isoformat
from notifications import (
    Channel,
    ChannelBody,
    ChannelKind,
    Delivery,
    DeliveryQuery,
    DeliveryState,
    NotificationService,
    QuietHours,
)
from security import Permission, Principal

ChannelId = Annotated[str, PathParameter(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", description="Channel id")]
DeliveryId = Annotated[str, PathParameter(max_length=64, description="Delivery id")]
SubscriptionName = Annotated[str, PathParameter(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="Your name for it")]
Email = Annotated[str, msgspec.Meta(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)]

# Long enough to be a valid secret in the response schema, and never one anybody would choose.
_MASK = "*" * 16


def notifications_of(deps: ApiDeps) -> NotificationService:
    if deps.notifications is None:
        raise ServiceUnavailableException("notifications are off (notifications.enabled = false)")
    return deps.notifications


class ChannelView(msgspec.Struct, omit_defaults=True):
    id: str
    # The channel as written (a webhook's secret masked); a plain object so the request schema keeps its examples.
    channel: dict[str, Any]
    created_at: str
    updated_at: str
    owner: str | None = None


def channel_view(c: Channel) -> ChannelView:
    shown = msgspec.to_builtins(c.body)
    if c.body.secret:
        shown["secret"] = _MASK
    return ChannelView(c.id, shown, rfc3339(c.created_at), rfc3339(c.updated_at), c.owner)


class ChannelList(msgspec.Struct, omit_defaults=True):
    items: list[ChannelView]
    next_cursor: str | None = None


class DeliveryView(msgspec.Struct, omit_defaults=True):
    id: str
    channel_id: str
    state: str
    items: int
    created_at: str
    next_attempt_at: str | None
    attempts: int
    last_error: str | None = None
    delivered_at: str | None = None
    # On a single delivery read: what it carries.
    notifications: list[dict[str, Any]] | None = None


def delivery_view(d: Delivery, notifications: list[dict[str, Any]] | None = None) -> DeliveryView:
    return DeliveryView(
        d.id,
        d.channel_id,
        d.state.value,
        d.items,
        rfc3339(d.created_at),
        isoformat(d.next_at) if d.state is DeliveryState.PENDING else None,
        d.attempts,
        d.last_error,
        isoformat(d.delivered_at),
        notifications,
    )


class DeliveryList(msgspec.Struct, omit_defaults=True):
    items: list[DeliveryView]
    next_cursor: str | None = None


class QueuedOut(msgspec.Struct):
    notification_id: str
    channel: str


class SubscriptionBody(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Email me alerts of a fleet I see, from a severity up, optionally only some rules and not at night."""

    to: Email
    fleet: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    min_severity: str = "warning"
    rules: list[Annotated[str, msgspec.Meta(max_length=128)]] = msgspec.field(default_factory=list)
    events: list[Literal["raised", "acknowledged", "cleared"]] = msgspec.field(default_factory=lambda: ["raised"])
    quiet_hours: QuietHours | None = None
    rate_per_hour: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 12.0


_CHANNEL_EXAMPLES = body(
    (
        "webhook",
        "Signed webhook for one fleet's major and critical alerts",
        {
            "kind": "webhook",
            "url": "https://ops.example.com/fleethub",
            "secret": "change-me-to-a-long-random-string",
            "fleet": "north",
            "min_severity": "major",
        },
    ),
    (
        "email",
        "Maintenance team email for maintenance alerts, quiet at night except critical",
        {
            "kind": "email",
            "to": ["workshop@example.com"],
            "fleet": "north",
            "rules": ["maintenance.*"],
            "quiet_hours": {"start": "22:00", "end": "07:00", "tz": "Europe/Madrid"},
        },
    ),
    (
        "chat",
        "Slack or Teams incoming webhook",
        {"kind": "chat", "url": "https://hooks.slack.com/services/T000/B000/XXXX", "min_severity": "critical"},
    ),
)
_SUBSCRIPTION_EXAMPLES = body(
    (
        "overdue",
        "Overdue maintenance of fleet north by email",
        {"to": "ana@example.com", "fleet": "north", "rules": ["maintenance.*.overdue"]},
    ),
)


def _sees_channel(principal: Principal, channel: Channel) -> bool:
    if channel.owner is not None:
        return channel.owner == principal.name or principal.can(Permission.NOTIFICATIONS_ADMIN)
    return principal.all_fleets if channel.body.fleet is None else principal.sees(channel.body.fleet)


def _subscription_id(principal: Principal, name: str) -> str:
    user = re.sub(r"[^a-z0-9_-]", "-", principal.name.lower())[:24] or "user"
    return f"u.{user}.{name}"


class NotificationsController(Controller):
    path = "/api/v1/notifications"
    tags = ["notifications"]  # noqa: RUF012 - Litestar reads this class attribute

    @get("/channels", summary="Notification channels you can see, by id", opt=requires(Permission.NOTIFICATIONS_READ))
    async def list_channels(
        self, deps: Deps, principal: Caller, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
    ) -> ChannelList:
        views = [channel_view(c) for c in notifications_of(deps).list_channels() if _sees_channel(principal, c)]
        items, next_cursor = page_of(views, lambda v: v.id, page_size(limit, deps.max_page_size), cursor)
        return ChannelList(items, next_cursor)

    @get("/channels/{channel_id:str}", summary="Read a channel", opt=requires(Permission.NOTIFICATIONS_READ))
    async def get_channel(self, deps: Deps, principal: Caller, channel_id: ChannelId) -> ChannelView:
        channel = notifications_of(deps).get_channel(channel_id)
        if not _sees_channel(principal, channel):
            raise NotFound(f"notification channel '{channel_id}' not found")
        return channel_view(channel)

    @put(
        "/channels/{channel_id:str}",
        summary="Create or replace a channel: webhook (signed), chat (Slack/Teams) or email, with its routing",
        responses={201: ResponseSpec(ChannelView, generate_examples=False, description="Created")},
        opt=requires(Permission.NOTIFICATIONS_ADMIN),
    )
    async def put_channel(
        self,
        request: Request[Any, Any, Any],
        deps: Deps,
        principal: Caller,
        channel_id: ChannelId,
        data: Annotated[ChannelBody, _CHANNEL_EXAMPLES],
    ) -> Response[ChannelView]:
        if data.fleet is None and not principal.all_fleets:
            raise InvalidPayload("bad_body", "name the fleet; you do not see every fleet")
        if data.fleet is not None:
            ensure_fleet(principal, data.fleet, f"fleet {data.fleet!r}")
        channel, created = await notifications_of(deps).put_channel(channel_id, data, actor=actor_of(request))
        return Response(channel_view(channel), status_code=HTTP_201_CREATED if created else HTTP_200_OK)

    @delete(
        "/channels/{channel_id:str}",
        summary="Delete a channel; what it had not yet taken into a delivery is dropped",
        opt=requires(Permission.NOTIFICATIONS_ADMIN),
    )
    async def delete_channel(self, request: Request[Any, Any, Any], deps: Deps, channel_id: ChannelId) -> None:
        await notifications_of(deps).delete_channel(channel_id, actor=actor_of(request))

    @post(
        "/channels/{channel_id:str}/test",
        summary="Queue a test notification for a channel (it goes out like any other: rate, quiet hours, retries)",
        status_code=HTTP_202_ACCEPTED,
        opt=requires(Permission.NOTIFICATIONS_ADMIN),
    )
    async def test_channel(self, deps: Deps, principal: Caller, channel_id: ChannelId) -> QueuedOut:
        item = await notifications_of(deps).test(channel_id, by=principal.actor)
        return QueuedOut(item.id, channel_id)

    @get(
        "/subscriptions",
        summary="Your personal email subscriptions",
        opt=requires(Permission.NOTIFICATIONS_READ),
    )
    async def subscriptions(self, deps: Deps, principal: Caller) -> ChannelList:
        mine = [channel_view(c) for c in notifications_of(deps).list_channels() if c.owner == principal.name]
        return ChannelList(mine)

    @put(
        "/subscriptions/{name:str}",
        summary="Subscribe yourself by email to alerts of a fleet you see",
        responses={201: ResponseSpec(ChannelView, generate_examples=False, description="Created")},
        opt=requires(Permission.NOTIFICATIONS_READ),
    )
    async def subscribe(
        self,
        request: Request[Any, Any, Any],
        deps: Deps,
        principal: Caller,
        name: SubscriptionName,
        data: Annotated[SubscriptionBody, _SUBSCRIPTION_EXAMPLES],
    ) -> Response[ChannelView]:
        ensure_fleet(principal, data.fleet, f"fleet {data.fleet!r}")
        try:
            channel_body = ChannelBody(
                kind=ChannelKind.EMAIL,
                to=[data.to],
                fleet=data.fleet,
                min_severity=data.min_severity,
                rules=data.rules,
                events=data.events,
                quiet_hours=data.quiet_hours,
                rate_per_hour=data.rate_per_hour,
            )
        except ValueError as exc:
            raise InvalidPayload("bad_body", str(exc)) from None
        channel, created = await notifications_of(deps).put_channel(
            _subscription_id(principal, name), channel_body, owner=principal.name, actor=actor_of(request)
        )
        return Response(channel_view(channel), status_code=HTTP_201_CREATED if created else HTTP_200_OK)

    @delete(
        "/subscriptions/{name:str}",
        summary="End one of your subscriptions",
        opt=requires(Permission.NOTIFICATIONS_READ),
    )
    async def unsubscribe(
        self, request: Request[Any, Any, Any], deps: Deps, principal: Caller, name: SubscriptionName
    ) -> None:
        service = notifications_of(deps)
        channel_id = _subscription_id(principal, name)
        if service.get_channel(channel_id).owner != principal.name:
            raise NotFound(f"subscription '{name}' not found")
        await service.delete_channel(channel_id, actor=actor_of(request))

    @get(
        "/deliveries",
        summary="Deliveries, newest first; state=dead is the dead-letter list",
        opt=requires(Permission.NOTIFICATIONS_READ),
    )
    async def deliveries(
        self,
        deps: Deps,
        principal: Caller,
        state_: Annotated[str | None, QueryParameter(name="state", description="pending, delivered or dead")] = None,
        channel: Annotated[str | None, QueryParameter(description="Channel id")] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> DeliveryList:
        service = notifications_of(deps)
        state = state_
        try:
            wanted = DeliveryState(state) if state is not None else None
        except ValueError:
            raise InvalidPayload("bad_query", f"state must be pending, delivered or dead, got {state!r}") from None
        visible = {c.id for c in service.list_channels() if _sees_channel(principal, c)}
        if channel is not None and channel not in visible:
            return DeliveryList([])
        size = page_size(limit, deps.max_page_size)
        before = decode_cursor(cursor, float, str) if cursor else None
        out: list[Delivery] = []
        # Deliveries of channels the caller does not see are skipped; read on until a page is full.
        while len(out) <= size:
            query = DeliveryQuery(state=wanted, channel_id=channel, before=before, limit=size + 1)
            found = await service.list_deliveries(query)
            out += [d for d in found if d.channel_id in visible]
            if len(found) <= size:
                break
            before = (found[-1].created_at, found[-1].id)
        more, out = len(out) > size, out[:size]
        next_cursor = encode_cursor(out[-1].created_at, out[-1].id) if more else None
        return DeliveryList([delivery_view(d) for d in out], next_cursor)

    @get(
        "/deliveries/{delivery_id:str}",
        summary="Read a delivery and what it carries",
        opt=requires(Permission.NOTIFICATIONS_READ),
    )
    async def get_delivery(self, deps: Deps, principal: Caller, delivery_id: DeliveryId) -> DeliveryView:
        service = notifications_of(deps)
        delivery = await service.get_delivery(delivery_id)
        channel = next((c for c in service.list_channels() if c.id == delivery.channel_id), None)
        if channel is None or not _sees_channel(principal, channel):
            raise NotFound(f"delivery '{delivery_id}' not found")
        items = await service.delivery_items(delivery_id)
        return delivery_view(delivery, [i.payload for i in items])

    @post(
        "/deliveries/{delivery_id:str}/replay",
        summary="Send a dead-lettered delivery again (attempts start over)",
        status_code=HTTP_200_OK,
        opt=requires(Permission.NOTIFICATIONS_ADMIN),
    )
    async def replay(self, request: Request[Any, Any, Any], deps: Deps, delivery_id: DeliveryId) -> DeliveryView:
        return delivery_view(await notifications_of(deps).replay(delivery_id, actor=actor_of(request)))
