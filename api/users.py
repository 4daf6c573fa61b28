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
from litestar.params import PathParameter, QueryParameter
from litestar.status_codes import HTTP_201_CREATED

from api.auth import Caller, remote_of, requires
from api.credentials import security_of
from api.deps import Deps
from api.examples import body
from api.paging import DEFAULT_LIMIT, Cursor, Limit, page_of, page_size
from api.times import rfc3339
from kernel import NotFound, isoformat
from security import ALL_FLEETS, Actor, ApiToken, Permission, Principal, PrincipalKind, Role, SecurityService, User

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
    # RFC 3339.
    created_at: str
    has_password: bool
    disabled: bool


class MeView(msgspec.Struct):
    name: str
    role: Role
    fleets: list[str]


class NewToken(msgspec.Struct, forbid_unknown_fields=True):
    # Whose token; yourself when omitted. Another user's needs the users:admin permission.
    user: str | None = None
    ttl_s: float | None = None
    label: str = ""


class TokenView(msgspec.Struct, omit_defaults=True):
    id: str
    user: str
    label: str
    # RFC 3339; `revoked_at` only once revoked.
    created_at: str
    expires_at: str
    revoked_at: str | None = None


class IssuedTokenView(TokenView):
    # Shown only in this response: send it as `Authorization: Bearer <token>`.
    token: str = ""


class UserList(msgspec.Struct, omit_defaults=True):
    items: list[UserView]
    next_cursor: str | None = None


class TokenList(msgspec.Struct, omit_defaults=True):
    items: list[TokenView]
    next_cursor: str | None = None


_USER_EXAMPLES = body(
    ("operator", "An operator of one fleet, API tokens only", {"name": "olga", "role": "operator", "fleets": ["acme"]}),
    (
        "dashboard",
        "A maintenance user who also logs in to MQTT with a password",
        {"name": "workshop", "role": "maintenance", "fleets": ["acme", "globex"], "password": "change-me-now"},
    ),
)
_TOKEN_EXAMPLES = body(
    ("own", "A token for yourself, with the default lifetime", {"label": "laptop"}),
    ("for-user", "An admin issues a 30-day token for a user", {"user": "olga", "ttl_s": 2592000, "label": "ci"}),
)


def _user_view(u: User) -> UserView:
    return UserView(u.name, u.role, list(u.fleets), rfc3339(u.created_at), u.password_hash is not None, u.disabled)


def _token_view(t: ApiToken) -> TokenView:
    return TokenView(t.id, t.user, t.label, rfc3339(t.created_at), rfc3339(t.expires_at), isoformat(t.revoked_at))


def _token_order(t: ApiToken) -> str:
    # Oldest first; fixed-width creation time, then the id for ties, so text order is time order.
    return f"{t.created_at:020.6f}/{t.id}"


def _covers(principal: Caller, fleets: tuple[str, ...] | list[str]) -> bool:
    """Whether `principal` sees every fleet in `fleets` (an admin may only hand out what it has)."""
    if principal.all_fleets:
        return True
    return ALL_FLEETS not in fleets and all(principal.sees(f) for f in fleets)


async def _tokens_visible(security: SecurityService, principal: Principal, user: str) -> bool:
    """Whether `principal` may see and revoke `user`'s tokens: its own, or as an admin covering every fleet of theirs.

    A user that no longer exists counts as one of every fleet, so only a global admin sees its leftover tokens.
    """
    if user == principal.name and principal.kind is PrincipalKind.USER:
        return True
    if not principal.can(Permission.USERS_ADMIN):
        return False
    try:
        fleets = (await security.user(user)).fleets
    except NotFound:
        fleets = (ALL_FLEETS,)
    return _covers(principal, fleets)


def _actor(request: Request[Any, Any, Any], principal: Caller) -> Actor:
    return Actor.of(principal, remote_of(request))


class UsersController(Controller):
    path = "/api/v1/users"
    tags = ["users"]  # noqa: RUF012 - Litestar reads this class attribute

    @get("/", summary="List users", opt=requires(Permission.USERS_ADMIN))
    async def list_users(
        self, deps: Deps, principal: Caller, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
    ) -> UserList:
        users = [u for u in await security_of(deps).users() if _covers(principal, u.fleets)]
        page, next_cursor = page_of(users, lambda u: u.name, page_size(limit, deps.max_page_size), cursor)
        return UserList([_user_view(u) for u in page], next_cursor)

    @get("/me", summary="Who the token belongs to: name, role and fleets", opt=requires(Permission.TOKENS_OWN))
    async def me(self, principal: Caller) -> MeView:
        return MeView(principal.name, principal.role, sorted(principal.fleets))

    @post("/", summary="Create a user", status_code=HTTP_201_CREATED, opt=requires(Permission.USERS_ADMIN))
    async def add_user(
        self, request: Request[Any, Any, Any], deps: Deps, principal: Caller, data: Annotated[NewUser, _USER_EXAMPLES]
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
        self, request: Request[Any, Any, Any], deps: Deps, principal: Caller, data: Annotated[NewToken, _TOKEN_EXAMPLES]
    ) -> IssuedTokenView:
        security = security_of(deps)
        user = data.user or principal.name
        if user != principal.name or principal.kind is not PrincipalKind.USER:
            if not principal.can(Permission.USERS_ADMIN):
                raise PermissionDeniedException(detail="issuing a token for another user needs users:admin")
            if not _covers(principal, (await security.user(user)).fleets):
                raise PermissionDeniedException(detail="this user has fleets you do not see")
        issued = await security.issue_token(user, actor=_actor(request, principal), ttl_s=data.ttl_s, label=data.label)
        return IssuedTokenView(**msgspec.structs.asdict(_token_view(issued.token)), token=issued.secret)

    @get("/", summary="List your tokens (admins: ?user=)", opt=requires(Permission.TOKENS_OWN))
    async def list_tokens(
        self,
        deps: Deps,
        principal: Caller,
        user: Annotated[str | None, QueryParameter()] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> TokenList:
        security = security_of(deps)
        whose = user or principal.name
        if whose != principal.name and not principal.can(Permission.USERS_ADMIN):
            raise PermissionDeniedException(detail="listing another user's tokens needs users:admin")
        if not await _tokens_visible(security, principal, whose):
            # A user of fleets the caller does not see is as absent as in GET /users.
            raise NotFound(f"user '{whose}' not found")
        tokens = await security.tokens(whose)
        page, next_cursor = page_of(tokens, _token_order, page_size(limit, deps.max_page_size), cursor)
        return TokenList([_token_view(t) for t in page], next_cursor)

    @delete(
        "/{token_id:str}",
        summary="Revoke a token; MQTT sessions opened with it are closed",
        opt=requires(Permission.TOKENS_OWN),
    )
    async def revoke(self, request: Request[Any, Any, Any], deps: Deps, principal: Caller, token_id: TokenId) -> None:
        security = security_of(deps)
        token = await security.token(token_id)
        if token is not None and not await _tokens_visible(security, principal, token.user):
            token = None
        if token is None:
            raise NotFound(f"token '{token_id}' not found")
        await security.revoke_token(token_id, actor=_actor(request, principal))
