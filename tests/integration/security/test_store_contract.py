"""One contract for every security store backend: in memory, SQLite and PostgreSQL."""

import pytest

from kernel import PostgresDatabase, SqliteDatabase
from security import (
    AlreadyExists,
    ApiToken,
    AuditEntry,
    AuditQuery,
    MemorySecurityStore,
    Role,
    SqlSecurityStore,
    User,
    VehicleCredential,
)

BACKENDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def store(request, tmp_path):
    if request.param == "memory":
        async with MemorySecurityStore() as memory:
            yield memory
    elif request.param == "sqlite":
        # The database applies the migrations the security tables come from when it opens.
        async with SqliteDatabase(f"sqlite:///{tmp_path}/hub.db") as db, SqlSecurityStore(db) as sqlite:
            yield sqlite
    else:
        url = request.getfixturevalue("pg_url")
        async with PostgresDatabase(url, pool_min_size=1, pool_max_size=2) as db, SqlSecurityStore(db) as pg:
            yield pg


async def test_credentials_round_trip_and_refuse_duplicates(store) -> None:
    """A credential is stored once, replaced by put, listed by fleet in id order."""
    cred = VehicleCredential("veh-2", "acme", "$argon2id$x", 10.0)
    await store.add_credential(cred)
    await store.add_credential(VehicleCredential("veh-1", "acme", "$argon2id$y", 11.0))
    await store.add_credential(VehicleCredential("veh-3", "globex", "$argon2id$z", 12.0))
    with pytest.raises(AlreadyExists):
        await store.add_credential(cred)
    assert await store.get_credential("veh-2") == cred
    assert await store.get_credential("nope") is None
    revoked = VehicleCredential("veh-2", "acme", "$argon2id$x", 10.0, 20.0, 30.0)
    await store.put_credential(revoked)
    assert await store.get_credential("veh-2") == revoked
    assert not revoked.active
    assert [c.vehicle_id for c in await store.list_credentials("acme")] == ["veh-1", "veh-2"]
    assert len(await store.list_credentials()) == 3


async def test_users_round_trip(store) -> None:
    """Users keep role, fleets and password hash; names are unique; delete says whether it removed one."""
    alice = User("alice", Role.OPERATOR, ("acme", "globex"), 1.0, "$argon2id$p")
    await store.add_user(alice)
    with pytest.raises(AlreadyExists):
        await store.add_user(alice)
    await store.add_user(User("bob", Role.VIEWER, ("acme",), 2.0))
    assert await store.get_user("alice") == alice
    assert [u.name for u in await store.list_users()] == ["alice", "bob"]
    changed = User("alice", Role.ADMIN, ("*",), 1.0, None, disabled=True)
    await store.put_user(changed)
    assert await store.get_user("alice") == changed
    assert await store.delete_user("bob")
    assert not await store.delete_user("bob")
    assert await store.get_user("bob") is None


async def test_tokens_by_hash_and_revocation(store) -> None:
    """Tokens are found by digest and id, listed per user, and keep their revocation."""
    token = ApiToken("t1", "alice", "d" * 64, 1.0, 100.0, "laptop")
    await store.add_token(token)
    await store.add_token(ApiToken("t2", "bob", "e" * 64, 2.0, 100.0))
    with pytest.raises(AlreadyExists):
        await store.add_token(ApiToken("t3", "bob", "e" * 64, 2.0, 100.0))
    assert await store.token_by_hash("d" * 64) == token
    assert await store.token_by_hash("f" * 64) is None
    revoked = ApiToken("t1", "alice", "d" * 64, 1.0, 100.0, "laptop", 50.0)
    await store.put_token(revoked)
    assert await store.get_token("t1") == revoked
    assert not revoked.valid_at(60.0)
    assert [t.id for t in await store.list_tokens("alice")] == ["t1"]
    assert [t.id for t in await store.list_tokens()] == ["t1", "t2"]


async def test_audit_filters_and_orders_newest_first(store) -> None:
    """Audit entries filter by time, actor, vehicle, action and fleet scope, newest first."""
    entries = [
        AuditEntry("a1", 10.0, "alice", "twin.desired", "10.0.0.1:5000", "veh-1", "acme", None, {"patch": {"x": 1}}),
        AuditEntry("a2", 20.0, "bob", "alert.ack", "10.0.0.2:5000", "veh-2", "globex", "al-1", {}),
        AuditEntry("a3", 30.0, "cli", "user.add", "local", None, None, "carol", {"role": "viewer"}),
        AuditEntry("a4", 40.0, "alice", "twin.desired", "10.0.0.1:5001", "veh-1", "acme", None, {}),
    ]
    for entry in entries:
        await store.append_audit(entry)
    assert [e.id for e in await store.query_audit(AuditQuery())] == ["a4", "a3", "a2", "a1"]
    assert await store.query_audit(AuditQuery(actor="bob")) == [entries[1]]
    assert [e.id for e in await store.query_audit(AuditQuery(vehicle_id="veh-1"))] == ["a4", "a1"]
    assert [e.id for e in await store.query_audit(AuditQuery(action="twin.desired", start=15))] == ["a4"]
    assert [e.id for e in await store.query_audit(AuditQuery(end=30))] == ["a2", "a1"]
    assert [e.id for e in await store.query_audit(AuditQuery(fleets=("acme",)))] == ["a4", "a3", "a1"]
    assert [e.id for e in await store.query_audit(AuditQuery(limit=1, before=(40.0, "a4")))] == ["a3"]
    assert (await store.query_audit(AuditQuery(actor="alice", limit=1)))[0].detail == {}


def _entry(entry_id: str, action: str) -> AuditEntry:
    return AuditEntry(entry_id, 100.0, "alice", action, "127.0.0.1:1", target="t", detail={"k": [1, "two"]})


async def test_a_change_and_its_audit_entry_commit_together(store) -> None:
    """Each write stores its audit entry with it; when the entry cannot be stored, the change is not either."""
    await store.add_user(User("alice", Role.VIEWER, ("acme",), 1.0), audit=_entry("a1", "user.add"))
    await store.add_credential(VehicleCredential("veh-1", "acme", "$h", 1.0), audit=_entry("a2", "vehicle.provision"))
    await store.add_token(ApiToken("t1", "alice", "digest-1", 1.0, 9.0), audit=_entry("a3", "token.create"))
    stored = await store.query_audit(AuditQuery())
    assert {e.id: e.action for e in stored} == {"a1": "user.add", "a2": "vehicle.provision", "a3": "token.create"}
    assert next(e for e in stored if e.id == "a1") == _entry("a1", "user.add")
    # The same entry id again cannot be stored, and each change it came with is rolled back.
    refused = _entry("a1", "again")
    with pytest.raises(AlreadyExists):
        await store.add_user(User("bob", Role.VIEWER, ("acme",), 2.0), audit=refused)
    with pytest.raises(AlreadyExists):
        await store.put_credential(VehicleCredential("veh-1", "acme", "$h", 1.0, None, 5.0), audit=refused)
    with pytest.raises(AlreadyExists):
        await store.put_token(ApiToken("t1", "alice", "digest-1", 1.0, 9.0, revoked_at=5.0), audit=refused)
    with pytest.raises(AlreadyExists):
        await store.delete_user("alice", audit=refused)
    assert await store.get_user("bob") is None
    assert await store.get_user("alice") is not None
    credential = await store.get_credential("veh-1")
    assert credential is not None
    assert credential.active
    token = await store.get_token("t1")
    assert token is not None
    assert token.revoked_at is None
    assert len(await store.query_audit(AuditQuery())) == 3
