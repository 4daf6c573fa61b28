"""HTTP endpoints an external MQTT broker calls to log clients in and check their topics.

- EMQX 5 HTTP authentication (`POST /broker-auth/emqx/authn`, JSON) answers
  `{"result": "allow" | "deny", "is_superuser": false, "acl": [...]}`: the `acl` (EMQX
  5.8+) carries the client's grants, ending in a deny-all when they are complete, so
  EMQX asks nothing more; where they are not (a user of some fleets), EMQX falls
  through to the HTTP authorizer. A login by API token carries the token's expiry as
  `expire_at`.
- EMQX 5 HTTP authorization (`POST /broker-auth/emqx/authz`, JSON) answers
  `{"result": "allow" | "deny"}`.
- RabbitMQ's `rabbitmq_auth_backend_http` (`/broker-auth/rabbitmq/user`, `vhost`,
  `resource`, `topic`; form-encoded POST or a GET query) answers plain `allow` or `deny`.

Every request must carry `auth.broker_secret` as the HTTP basic auth password (any user
name) or as a bearer token; without it the answer is 401, and with no secret configured
the endpoints do not exist (404). The decisions are `broker.ExternalAuth`'s, made by the
embedded broker's rules. See docs/external-brokers.md.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import Body

from api.auth import deps_of, requires
from api.deps import ApiDeps, BrokerAuthConfig, BrokerGrants, Deps
from security import Permission, Principal, PrincipalKind

_OPT = requires(Permission.PUBLIC)
# RabbitMQ's MQTT plugin names a client's queues mqtt-subscription-{client id}qos{0,1}.
_QUEUE_PREFIX = "mqtt-subscription-"


def _config(deps: ApiDeps) -> BrokerAuthConfig:
    found = deps.broker_auth
    if found is None:
        raise NotFoundException(detail="the broker endpoints are off (auth.broker_secret is empty)")
    return found


def _presented_secret(header: str) -> str:
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[2]
    return ""


async def broker_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Only the broker configured with the shared secret may ask."""
    config = _config(deps_of(connection))
    presented = _presented_secret(connection.headers.get("authorization", ""))
    if not presented or not hmac.compare_digest(presented.encode(), config.secret.encode()):
        raise NotAuthorizedException(
            detail="send auth.broker_secret as the basic auth password or a bearer token",
            headers={"WWW-Authenticate": 'Basic realm="fleethub-broker"'},
        )


# -- EMQX ------------------------------------------------------------------------------


class EmqxAuthn(msgspec.Struct):
    """The body EMQX's HTTP authenticator is configured to send (docs/external-brokers.md)."""

    username: str = ""
    password: str = ""
    clientid: str = ""
    peerhost: str = ""


class EmqxAuthz(msgspec.Struct):
    username: str = ""
    clientid: str = ""
    topic: str = ""
    action: str = ""
    peerhost: str = ""


class EmqxRule(msgspec.Struct):
    permission: Literal["allow", "deny"]
    action: Literal["publish", "subscribe", "all"]
    topic: str


class EmqxAuthnResult(msgspec.Struct, omit_defaults=True):
    result: Literal["allow", "deny"]
    # Never: a superuser would skip every ACL check, and the hub's rules know none.
    is_superuser: bool
    acl: list[EmqxRule] | None = None
    # Unix seconds: EMQX (5.8+) disconnects the client then, as a user's API token expires.
    expire_at: int | None = None


class EmqxAuthzResult(msgspec.Struct):
    result: Literal["allow", "deny"]


def emqx_acl(grants: BrokerGrants) -> list[EmqxRule]:
    """The grants as EMQX ACL rules; a deny-all closes a complete list so nothing falls through."""
    rules = [
        EmqxRule("allow", "publish" if g.action == "publish" else "subscribe", g.topic_filter) for g in grants.grants
    ]
    if grants.complete:
        rules.append(EmqxRule("deny", "all", "#"))
    else:
        # What else such a client may see depends on the vehicles' fleets: the authorizer decides.
        rules.append(EmqxRule("deny", "publish", "#"))
    return rules


# -- RabbitMQ ----------------------------------------------------------------------------


def _amqp_to_mqtt(routing_key: str) -> str:
    # RabbitMQ's MQTT plugin maps MQTT "/" to "." and "+" to "*" ("#" stays).
    return "/".join("+" if word == "*" else word for word in routing_key.split("."))


def _client_id(params: Mapping[str, str]) -> str:
    # The MQTT plugin sends the client id as client_id, except in topic checks (variable_map.client_id).
    return params.get("client_id") or params.get("variable_map.client_id", "")


async def _params(request: Request[Any, Any, Any]) -> Mapping[str, str]:
    if request.method == "GET":
        return {k: str(v) for k, v in request.query_params.items()}
    form = await request.form()
    return {k: str(v) for k, v in form.items()}


def _text(allowed: bool) -> Response[str]:
    # rabbitmq_auth_backend_http reads the body only: "allow" (tags could follow; fleethub grants none) or "deny".
    return Response("allow" if allowed else "deny", media_type=MediaType.TEXT)


class BrokerAuthController(Controller):
    path = "/broker-auth"
    tags = ["broker auth"]  # noqa: RUF012 - Litestar reads this class attribute
    include_in_schema = False
    guards = [broker_only]  # noqa: RUF012 - Litestar reads this class attribute

    @post("/emqx/authn", opt=_OPT, status_code=200)
    async def emqx_authn(self, deps: Deps, data: Annotated[EmqxAuthn, Body()]) -> EmqxAuthnResult:
        access = _config(deps).access
        principal = await access.login(data.username, data.password, data.clientid, data.peerhost)
        if principal is None:
            return EmqxAuthnResult("deny", is_superuser=False)
        acl = emqx_acl(await access.grants(principal))
        expires = await access.expires_at(principal)
        return EmqxAuthnResult(
            "allow", is_superuser=False, acl=acl, expire_at=None if expires is None else int(expires)
        )

    @post("/emqx/authz", opt=_OPT, status_code=200)
    async def emqx_authz(self, deps: Deps, data: Annotated[EmqxAuthz, Body()]) -> EmqxAuthzResult:
        access = _config(deps).access
        principal = await access.principal(data.username)
        allowed = (
            principal is not None
            and data.action in ("publish", "subscribe")
            and not (principal.kind is PrincipalKind.VEHICLE and data.clientid != principal.name)
            and await access.may(principal, "publish" if data.action == "publish" else "subscribe", data.topic)
        )
        return EmqxAuthzResult("allow" if allowed else "deny")

    async def _rabbit_principal(self, deps: ApiDeps, params: Mapping[str, str]) -> Principal | None:
        config = _config(deps)
        if params.get("vhost", config.rabbitmq_vhost) != config.rabbitmq_vhost:
            return None
        principal = await config.access.principal(params.get("username", ""))
        client_id = _client_id(params)
        if principal is not None and principal.kind is PrincipalKind.VEHICLE and client_id != principal.name:
            return None
        return principal

    @get("/rabbitmq/user", opt=_OPT, media_type=MediaType.TEXT, name="rabbitmq_user_get")
    async def rabbitmq_user_get(self, request: Request[Any, Any, Any], deps: Deps) -> Response[str]:
        return await self._user(request, deps)

    @post("/rabbitmq/user", opt=_OPT, media_type=MediaType.TEXT, status_code=200)
    async def rabbitmq_user(self, request: Request[Any, Any, Any], deps: Deps) -> Response[str]:
        return await self._user(request, deps)

    async def _user(self, request: Request[Any, Any, Any], deps: ApiDeps) -> Response[str]:
        params = await _params(request)
        config = _config(deps)
        if params.get("vhost", config.rabbitmq_vhost) != config.rabbitmq_vhost:
            return _text(False)
        # RabbitMQ does not tell the client's address at login; the limits then count by name.
        principal = await config.access.login(
            params.get("username", ""), params.get("password", ""), params.get("client_id", ""), ""
        )
        return _text(principal is not None)

    @get("/rabbitmq/vhost", opt=_OPT, media_type=MediaType.TEXT, name="rabbitmq_vhost_get")
    async def rabbitmq_vhost_get(self, request: Request[Any, Any, Any], deps: Deps) -> Response[str]:
        return _text(await self._rabbit_principal(deps, await _params(request)) is not None)

    @post("/rabbitmq/vhost", opt=_OPT, media_type=MediaType.TEXT, status_code=200)
    async def rabbitmq_vhost(self, request: Request[Any, Any, Any], deps: Deps) -> Response[str]:
        return _text(await self._rabbit_principal(deps, await _params(request)) is not None)

    @get("/rabbitmq/resource", opt=_OPT, media_type=MediaType.TEXT, name="rabbitmq_resource_get")
    async def rabbitmq_resource_get(self, request: Request[Any, Any, Any], deps: Deps) -> Response[str]:
        return await self._resource(request, deps)

    @post("/rabbitmq/resource", opt=_OPT, media_type=MediaType.TEXT, status_code=200)
    async def rabbitmq_resource(self, request: Request[Any, Any, Any], deps: Deps) -> Response[str]:
        return await self._resource(request, deps)

    async def _resource(self, request: Request[Any, Any, Any], deps: ApiDeps) -> Response[str]:
        """The exchange and the client's own subscription queues, nothing else."""
        params = await _params(request)
        principal = await self._rabbit_principal(deps, params)
        if principal is None:
            return _text(False)
        config = _config(deps)
        resource, name, permission = params.get("resource"), params.get("name", ""), params.get("permission")
        if resource == "exchange":
            # Reading binds a subscription queue; writing publishes, which only vehicles do.
            allowed = name == config.rabbitmq_exchange and (
                permission == "read" or (permission == "write" and principal.kind is PrincipalKind.VEHICLE)
            )
            return _text(allowed)
        if resource == "queue":
            client_id = _client_id(params)
            own = bool(client_id) and name.startswith(_QUEUE_PREFIX + client_id + "qos")
            return _text(own and permission in ("configure", "read", "write"))
        return _text(False)

    @get("/rabbitmq/topic", opt=_OPT, media_type=MediaType.TEXT, name="rabbitmq_topic_get")
    async def rabbitmq_topic_get(self, request: Request[Any, Any, Any], deps: Deps) -> Response[str]:
        return await self._topic(request, deps)

    @post("/rabbitmq/topic", opt=_OPT, media_type=MediaType.TEXT, status_code=200)
    async def rabbitmq_topic(self, request: Request[Any, Any, Any], deps: Deps) -> Response[str]:
        return await self._topic(request, deps)

    async def _topic(self, request: Request[Any, Any, Any], deps: ApiDeps) -> Response[str]:
        """A publish (write) or a subscription (read), by the MQTT topic behind the routing key."""
        params = await _params(request)
        principal = await self._rabbit_principal(deps, params)
        config = _config(deps)
        if principal is None or params.get("name") != config.rabbitmq_exchange:
            return _text(False)
        permission = params.get("permission")
        if permission not in ("read", "write"):
            return _text(False)
        topic = _amqp_to_mqtt(params.get("routing_key", ""))
        return _text(await config.access.may(principal, "publish" if permission == "write" else "subscribe", topic))
