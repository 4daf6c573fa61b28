"""Users and their API tokens.

Admins manage users (within their own fleets, unless they see every fleet); anyone
authenticated manages their own tokens. A token's secret appears only in the response
that created it; the store keeps its SHA-256 digest.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.exceptions import PermissionDeniedException
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_201_CREATED

from api.auth import Caller, remote_of, requires
from api.credentials import security_of
from api.deps import Deps
from kernel import NotFound
from security import ALL_FLEETS, Actor, ApiToken, Permission, PrincipalKind, Role, User

UserName = Annotated[str, PathParameter(description="User name")]
TokenId = Annotated[str, PathParameter(description="Token id (not the token)")]


class NewUser(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    role: Role
    fleets: list[str]
    # Optional: lets the user log in to MQTT with a password instead of a token.
    password: str | None = None


class UserView(msgspec.Struct):
    name: str
    role: Role
    fleets: list[str]
    created_at: float
    has_password: bool
    disabled: bool


class NewToken(msgspec.Struct, forbid_unknown_fields=True):
    # Whose token; yourself when omitted. Another user's needs the users:admin permission.
    user: str | None = None
    ttl_s: float | None = None
    label: str = ""


class TokenView(msgspec.Struct):
    id: str
    user: str
    label: str
    created_at: float
    expires_at: float
    revoked_at: float | None


class IssuedTokenView(TokenView):
    # Shown only in this response: send it as `Authorization: Bearer <token>`.
    token: str = ""


class UserList(msgspec.Struct):
    items: list[UserView]


class TokenList(msgspec.Struct):
    items: list[TokenView]


def _user_view(u: User) -> UserView:
    return UserView(u.name, u.role, list(u.fleets), u.created_at, u.password_hash is not None, u.disabled)


def _token_view(t: ApiToken) -> TokenView:
    return TokenView(t.id, t.user, t.label, t.created_at, t.expires_at, t.revoked_at)


def _covers(principal: Caller, fleets: tuple[str, ...] | list[str]) -> bool:
    """Whether `principal` sees every fleet in `fleets` (an admin may only hand out what it has)."""
    if principal.all_fleets:
        return True
    return ALL_FLEETS not in fleets and all(principal.sees(f) for f in fleets)


def _actor(request: Request[Any, Any, Any], principal: Caller) -> Actor:
    return Actor.of(principal, remote_of(request))


class UsersController(Controller):
    path = "/api/v1/users"
    tags = ["users"]  # noqa: RUF012 - Litestar reads this class attribute

    @get("/", summary="List users", opt=requires(Permission.USERS_ADMIN))
    async def list_users(self, deps: Deps, principal: Caller) -> UserList:
        users = await security_of(deps).users()
        return UserList([_user_view(u) for u in users if _covers(principal, u.fleets)])

    @get("/me", summary="Who the token belongs to: name, role and fleets", opt=requires(Permission.TOKENS_OWN))
    async def me(self, principal: Caller) -> dict[str, Any]:
        return {"name": principal.name, "role": principal.role.value, "fleets": sorted(principal.fleets)}

    @post("/", summary="Create a user", status_code=HTTP_201_CREATED, opt=requires(Permission.USERS_ADMIN))
    async def add_user(
        self, request: Request[Any, Any, Any], deps: Deps, principal: Caller, data: JSONBody[NewUser]
    ) -> UserView:
        if not _covers(principal, data.fleets):
            raise PermissionDeniedException(detail="you can only grant fleets you see yourself")
        user = await security_of(deps).add_user(
            data.name, data.role, tuple(data.fleets), actor=_actor(request, principal), password=data.password
        )
        return _user_view(user)

    @delete("/{name:str}", summary="Delete a user and revoke their tokens", opt=requires(Permission.USERS_ADMIN))
    async def remove_user(self, request: Request[Any, Any, Any], deps: Deps, principal: Caller, name: UserName) -> None:
        security = security_of(deps)
        user = await security.user(name)
        if not _covers(principal, user.fleets):
            raise PermissionDeniedException(detail="this user has fleets you do not see")
        await security.remove_user(name, actor=_actor(request, principal))


class TokensController(Controller):
    path = "/api/v1/tokens"
    tags = ["users"]  # noqa: RUF012 - Litestar reads this class attribute

    @post(
        "/",
        summary="Issue an API token (shown once)",
        status_code=HTTP_201_CREATED,
        opt=requires(Permission.TOKENS_OWN),
    )
    async def issue(
        self, request: Request[Any, Any, Any], deps: Deps, principal: Caller, data: JSONBody[NewToken]
    ) -> IssuedTokenView:
        security = security_of(deps)
        user = data.user or principal.name
        if user != principal.name or principal.kind is not PrincipalKind.USER:
            if not principal.can(Permission.USERS_ADMIN):
                raise PermissionDeniedException(detail="issuing a token for another user needs users:admin")
            if not _covers(principal, (await security.user(user)).fleets):
                raise PermissionDeniedException(detail="this user has fleets you do not see")
        issued = await security.issue_token(user, actor=_actor(request, principal), ttl_s=data.ttl_s, label=data.label)
        t = issued.token
        return IssuedTokenView(t.id, t.user, t.label, t.created_at, t.expires_at, t.revoked_at, token=issued.secret)

    @get("/", summary="List your tokens (admins: ?user=)", opt=requires(Permission.TOKENS_OWN))
    async def list_tokens(
        self, deps: Deps, principal: Caller, user: Annotated[str | None, QueryParameter()] = None
    ) -> TokenList:
        security = security_of(deps)
        whose = user or principal.name
        if whose != principal.name and not principal.can(Permission.USERS_ADMIN):
            raise PermissionDeniedException(detail="listing another user's tokens needs users:admin")
        return TokenList([_token_view(t) for t in await security.tokens(whose)])

    @delete(
        "/{token_id:str}",
        summary="Revoke a token; MQTT sessions opened with it are closed",
        opt=requires(Permission.TOKENS_OWN),
    )
    async def revoke(self, request: Request[Any, Any, Any], deps: Deps, principal: Caller, token_id: TokenId) -> None:
        security = security_of(deps)
        token = await security.token(token_id)
        if token is not None and token.user != principal.name and not principal.can(Permission.USERS_ADMIN):
            token = None
        if token is None:
            raise NotFound(f"token '{token_id}' not found")
        await security.revoke_token(token_id, actor=_actor(request, principal))
