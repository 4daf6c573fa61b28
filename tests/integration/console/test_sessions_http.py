"""Console logins over real HTTP: the session cookie, CSRF on writes, logout and revocation."""

import uuid

import httpx

from security import CLI, AuditQuery, Role
from tests.integration.console.conftest import login


def vid() -> str:
    return f"veh-{uuid.uuid4().hex[:8]}"


async def test_login_sets_an_httponly_samesite_strict_cookie_and_no_token(hub, http, user) -> None:
    """A password login answers the principal and a CSRF token; the cookie is HttpOnly, SameSite=Strict, path /."""
    password = await user("ann", Role.OPERATOR, "acme")
    response = await http.post("/api/v1/session", json={"username": "ann", "password": password})
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("fleethub_session=")
    lowered = cookie.lower()
    assert "httponly" in lowered
    assert "samesite=strict" in lowered
    assert "path=/" in lowered
    assert "secure" not in lowered  # plain HTTP here; Secure is set under TLS
    body = response.json()
    assert body["authenticated"] is True
    assert body["user"] == "ann"
    assert body["fleets"] == ["acme"]
    assert "twins:write" in body["permissions"]
    assert "users:admin" not in body["permissions"]
    assert len(body["csrf_token"]) >= 32
    assert password not in response.text
    assert "fh_" not in response.text
    again = (await http.get("/api/v1/session")).json()
    assert again["authenticated"] is True
    assert again["csrf_token"] == body["csrf_token"]


async def test_without_a_cookie_or_token_the_api_is_401_and_the_session_says_so(hub, http) -> None:
    """No login: data routes answer 401 and GET /api/v1/session reports not authenticated."""
    assert (await http.get("/api/v1/console/fleet")).status_code == 401
    assert (await http.get("/api/v1/session")).json() == {
        "authenticated": False,
        "auth_enabled": True,
        "user": None,
        "role": None,
        "fleets": [],
        "permissions": [],
        "csrf_token": None,
    }
    forged = await http.get("/api/v1/console/fleet", headers={"Cookie": "fleethub_session=made-up"})
    assert forged.status_code == 401


async def test_wrong_passwords_are_refused_then_backed_off(hub, http, user) -> None:
    """Failed logins answer 401; past abuse.login_failures_before_backoff they answer 429 with Retry-After."""
    await user("bob", Role.VIEWER, "acme")
    codes = [
        (await http.post("/api/v1/session", json={"username": "bob", "password": "wrong"})).status_code
        for _ in range(5)
    ]
    # Three failures are free; the fourth starts a back-off that the fifth runs into.
    assert codes == [401, 401, 401, 401, 429]
    blocked = await http.post("/api/v1/session", json={"username": "bob", "password": "wrong"})
    assert int(blocked.headers["retry-after"]) >= 1


async def test_cookie_writes_need_the_csrf_token_and_the_same_origin(hub, http, user) -> None:
    """A cookie-authenticated PATCH without X-CSRF-Token, with a wrong one or cross-origin is 403; with it, 200."""
    car = vid()
    await hub.security.provision(car, "acme", actor=CLI)
    csrf = await login(http, "olga", await user("olga", Role.OPERATOR, "acme"))
    path = f"/api/v1/vehicles/{car}/twin/desired"
    assert (await http.get(f"/api/v1/vehicles/{car}/twin")).status_code == 200
    missing = await http.patch(path, json={"charge_limit": 80})
    assert missing.status_code == 403
    assert "X-CSRF-Token" in missing.json()["detail"]
    assert (await http.patch(path, json={"charge_limit": 80}, headers={"X-CSRF-Token": "nope"})).status_code == 403
    evil = {"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    assert (await http.patch(path, json={"charge_limit": 80}, headers=evil)).status_code == 403
    ok = await http.patch(path, json={"charge_limit": 80}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200
    audit = await hub.security.query_audit(AuditQuery(action="twin.desired"))
    assert [e.actor for e in audit] == ["olga"]


async def test_the_server_keeps_enforcing_roles_for_cookie_sessions(hub, http, user) -> None:
    """A viewer's session with a valid CSRF token still cannot change desired state (403)."""
    car = vid()
    await hub.security.provision(car, "acme", actor=CLI)
    csrf = await login(http, "vera", await user("vera", Role.VIEWER, "acme"))
    denied = await http.patch(f"/api/v1/vehicles/{car}/twin/desired", json={"x": 1}, headers={"X-CSRF-Token": csrf})
    assert denied.status_code == 403
    assert "twins:write" in denied.json()["detail"]


async def test_logout_ends_the_session(hub, http, user) -> None:
    """After DELETE /api/v1/session the cookie no longer authenticates (even if a client kept it)."""
    csrf = await login(http, "lou", await user("lou", Role.VIEWER, "acme"))
    kept = http.cookies.get("fleethub_session")
    assert kept
    assert (await http.get("/api/v1/console/fleet")).status_code == 200
    assert (await http.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})).status_code == 204
    async with httpx.AsyncClient(base_url=str(http.base_url), headers={"Cookie": f"fleethub_session={kept}"}) as replay:
        assert (await replay.get("/api/v1/console/fleet")).status_code == 401


async def test_a_session_opened_with_a_token_ends_when_the_token_is_revoked(hub, http, user) -> None:
    """Token login: revoking the token (or deleting the user) ends the console session at its next request."""
    await user("tim", Role.VIEWER, "acme")
    issued = await hub.security.issue_token("tim", actor=CLI)
    response = await http.post("/api/v1/session", json={"token": issued.secret})
    assert response.status_code == 200
    assert response.json()["user"] == "tim"
    assert (await http.get("/api/v1/console/fleet")).status_code == 200
    await hub.security.revoke_token(issued.token.id, actor=CLI)
    assert (await http.get("/api/v1/console/fleet")).status_code == 401
    async with httpx.AsyncClient(base_url=str(http.base_url)) as other:
        await login(other, "ula", await user("ula", Role.VIEWER, "acme"))
        assert (await other.get("/api/v1/console/fleet")).status_code == 200
        await hub.security.remove_user("ula", actor=CLI)
        assert (await other.get("/api/v1/console/fleet")).status_code == 401
