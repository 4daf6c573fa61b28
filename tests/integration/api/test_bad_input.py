"""Bad HTTP input of every kind is a 4xx problem document, never a 500 (real HTTP against a secure hub)."""

from security import CLI

JSON = {"Content-Type": "application/json"}
CSV = {"Content-Type": "text/csv"}

# (method, path, request keyword arguments, expected status): inputs found to be or to have been 500s, and
# their neighbours: bodies too deep to decode, times out of range, forged cursors, bad headers and bodies.
CASES = [
    ("POST", "/api/v1/users", {"content": b"[" * 5000 + b"]" * 5000, "headers": JSON}, 400),
    ("POST", "/api/v1/rules/validate", {"content": b'{"a":' * 3000 + b"1" + b"}" * 3000, "headers": JSON}, 400),
    ("PUT", "/api/v1/zones/z", {"content": b"[" * 40 + b"]" * 40, "headers": JSON}, 400),
    ("POST", "/api/v1/users", {"content": b"{not json", "headers": JSON}, 400),
    ("POST", "/api/v1/users", {"content": b"\xff\xfe\x00", "headers": JSON}, 400),
    ("POST", "/api/v1/tokens", {"json": {"ttl_s": 1e300}}, 422),
    ("POST", "/api/v1/tokens", {"content": b'{"ttl_s": 1e999}', "headers": JSON}, 400),
    ("POST", "/api/v1/tokens", {"json": {"ttl_s": -1}}, 422),
    ("GET", "/api/v1/vehicles/veh-bad/history?from=1e300", {}, 422),
    ("GET", "/api/v1/vehicles/veh-bad/history?from=inf", {}, 422),
    ("GET", "/api/v1/vehicles/veh-bad/history?to=nan", {}, 422),
    ("GET", "/api/v1/vehicles/veh-bad/twin?at=1e300", {}, 422),
    ("GET", "/api/v1/vehicles/veh-bad/trips?from=99999999999999", {}, 422),
    ("GET", "/api/v1/alerts?from=9999-99-99", {}, 422),
    ("GET", "/api/v1/audit?from=-1", {}, 422),
    ("POST", "/api/v1/rules/r/test", {"json": {"vehicle_id": "veh-bad", "from": 1e300}}, 422),
    ("GET", "/api/v1/vehicles?cursor=AAAA", {}, 422),
    ("GET", "/api/v1/alerts?cursor=" + "x" * 600, {}, 400),
    ("GET", "/api/v1/vehicles/veh-bad/history/aggregate?bucket=1d&agg=soc:avg&tz=Not/AZone", {}, 422),
    ("GET", "/api/v1/vehicles/veh-bad/history/aggregate?bucket=2h&agg=soc:avg", {}, 400),
    ("PATCH", "/api/v1/vehicles/veh-bad/twin/desired", {"json": {"a": 1}, "headers": {"If-Match": '"abc"'}}, 422),
    ("POST", "/api/v1/vehicles/veh-bad/commands?wait=1e999s", {"json": {"name": "locate"}}, 422),
    ("POST", "/api/v1/vehicles/import?fleet=acme", {"content": b"\xff\xfe", "headers": CSV}, 422),
    ("POST", "/api/v1/vehicles/import?fleet=acme", {"content": b'vehicle_id\n"ab\n', "headers": CSV}, 422),
    ("GET", "/api/v1/vehicles/%ZZ/twin", {}, 400),
]


async def test_bad_input_is_a_problem_document(secure_hub, admin) -> None:
    """Each bad input gets its 4xx status with an RFC 9457 problem document, and the hub keeps answering."""
    await secure_hub.security.provision("veh-bad", "acme", actor=CLI)
    for method, path, kwargs, status in CASES:
        where = f"{method} {path[:80]}"
        response = await admin.request(method, path, **kwargs)
        assert response.status_code == status, (where, response.text)
        assert response.headers["content-type"] == "application/problem+json", where
        problem = response.json()
        assert problem["status"] == status, where
        assert problem["detail"], where
        assert (await admin.get("/healthz")).status_code == 200, where


async def test_depth_limit_refuses_only_what_is_too_deep(secure_hub, admin) -> None:
    """A body at http.max_body_depth reaches its route (which judges it); one level more is 400 too_deep."""
    at_limit = b'{"when": "soc < 1", "x": ' + b"[" * 31 + b"]" * 31 + b"}"
    beyond = b'{"when": "soc < 1", "x": ' + b"[" * 32 + b"]" * 32 + b"}"
    passed = await admin.post("/api/v1/rules/validate", content=at_limit, headers=JSON)
    assert passed.status_code == 200
    assert passed.json()["valid"] is False
    refused = await admin.post("/api/v1/rules/validate", content=beyond, headers=JSON)
    assert refused.status_code == 400
    assert refused.json()["reason"] == "too_deep"
    too_big = await admin.post("/api/v1/rules/validate", content=b"[" + b"1," * 40_000 + b"1]", headers=JSON)
    assert too_big.status_code == 413
