"""Token administration over real HTTP: scoped to the caller's fleets, with a capped lifetime."""

import httpx

from fleethub.hub import Hub
from security import CLI, Role
from tests.integration.security.conftest import bearer, secure_settings


async def _token_id(hub, user: str) -> str:
    return (await hub.security.issue_token(user, actor=CLI)).token.id


async def test_a_fleet_admin_neither_lists_nor_revokes_tokens_outside_its_fleets(hub, http, token_for) -> None:
    """An acme admin manages acme users' tokens; the global admin's and other fleets' users' are 404 to it."""
    root = bearer(await token_for("root", Role.ADMIN))
    acme_admin = bearer(await token_for("aa", Role.ADMIN, "acme"))
    await token_for("anna", Role.VIEWER, "acme")
    await token_for("gus", Role.VIEWER, "globex")
    await token_for("both", Role.VIEWER, "acme", "globex")
    root_token, gus_token, both_token = [await _token_id(hub, u) for u in ("root", "gus", "both")]
    anna_token = await _token_id(hub, "anna")
    for user in ("root", "gus", "both", "no-such-user"):
        listed = await http.get("/api/v1/tokens", params={"user": user}, headers=acme_admin)
        assert listed.status_code == 404, user
        assert listed.headers["content-type"] == "application/problem+json"
    for token_id in (root_token, gus_token, both_token):
        assert (await http.delete(f"/api/v1/tokens/{token_id}", headers=acme_admin)).status_code == 404
    # Nothing was revoked: the global admin still sees every one of them as live.
    for user, token_id in (("root", root_token), ("gus", gus_token), ("both", both_token)):
        items = (await http.get("/api/v1/tokens", params={"user": user}, headers=root)).json()["items"]
        assert "revoked_at" not in next(t for t in items if t["id"] == token_id), user
    # Positive control: within its fleet the scoped admin lists and revokes.
    anna = (await http.get("/api/v1/tokens", params={"user": "anna"}, headers=acme_admin)).json()["items"]
    assert anna_token in {t["id"] for t in anna}
    assert (await http.delete(f"/api/v1/tokens/{anna_token}", headers=acme_admin)).status_code == 204
    audit = (await http.get("/api/v1/audit", params={"action": "token.revoke"}, headers=root)).json()["items"]
    assert [e["detail"]["token_id"] for e in audit] == [anna_token]


async def test_a_user_without_admin_sees_only_its_own_tokens(hub, http, token_for) -> None:
    """A viewer lists and revokes its own tokens; another user's are 403 (list) and 404 (revoke)."""
    vera = bearer(await token_for("vera", Role.VIEWER, "acme"))
    await token_for("olga", Role.OPERATOR, "acme")
    olga_token = await _token_id(hub, "olga")
    assert (await http.get("/api/v1/tokens", params={"user": "olga"}, headers=vera)).status_code == 403
    assert (await http.delete(f"/api/v1/tokens/{olga_token}", headers=vera)).status_code == 404
    own = (await http.get("/api/v1/tokens", headers=vera)).json()["items"]
    assert len(own) == 1
    assert (await http.delete(f"/api/v1/tokens/{own[0]['id']}", headers=vera)).status_code == 204


async def test_token_lifetime_is_capped(tmp_path) -> None:
    """auth.max_token_ttl_days caps ttl_s: longer (or non-finite) requests are 422, the cap itself is allowed."""
    settings = secure_settings(str(tmp_path / "hub.db"), **{"auth.max_token_ttl_days": 2, "auth.token_ttl_days": 1})
    async with Hub(settings) as hub:
        await hub.security.add_user("root", Role.ADMIN, ("*",), actor=CLI)
        root = bearer((await hub.security.issue_token("root", actor=CLI)).secret)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", headers=root) as http:
            too_long = await http.post("/api/v1/tokens", json={"ttl_s": 2 * 86400 + 1})
            assert too_long.status_code == 422
            assert too_long.json()["reason"] == "ttl_too_long"
            endless = await http.post(
                "/api/v1/tokens", content=b'{"ttl_s": 1e999}', headers={"Content-Type": "application/json"}
            )
            assert 400 <= endless.status_code < 500
            assert endless.headers["content-type"] == "application/problem+json"
            at_cap = await http.post("/api/v1/tokens", json={"ttl_s": 2 * 86400})
            assert at_cap.status_code == 201
            default = await http.post("/api/v1/tokens", json={})
            assert default.status_code == 201
        lifetimes = sorted(round(t.expires_at - t.created_at) for t in await hub.security.store.list_tokens("root"))
        # The CLI's token and `default` live auth.token_ttl_days; `at_cap` the maximum; nothing longer was issued.
        assert lifetimes == [86400, 86400, 2 * 86400]
