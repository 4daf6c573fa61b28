"""Password logins cost one argon2 verification whether or not the user exists, so timing tells nothing."""

import pytest

from security import CLI, MemorySecurityStore, Role, SecurityService
from security import secrets as sec


@pytest.fixture
def verifications(monkeypatch) -> list[str]:
    """The stored hashes `verify_password` was asked to check (the real function still runs)."""
    seen: list[str] = []
    real = sec.verify_password

    def counting(stored_hash: str, secret: str) -> bool:
        seen.append(stored_hash)
        return real(stored_hash, secret)

    monkeypatch.setattr(sec, "verify_password", counting)
    return seen


async def test_unknown_disabled_and_passwordless_users_cost_one_verification(verifications) -> None:
    """A wrong password, an unknown name, a disabled user and a user without a password each run argon2 once."""
    service = SecurityService(MemorySecurityStore(), verify_cache_s=0)
    await service.add_user("alice", Role.VIEWER, ("acme",), actor=CLI, password="right-password")
    await service.add_user("tokens-only", Role.VIEWER, ("acme",), actor=CLI)
    stored = await service.store.get_user("alice")
    assert stored is not None
    await service.store.put_user(
        type(stored)("dora", stored.role, stored.fleets, stored.created_at, stored.password_hash, True)
    )
    for name in ("alice", "nobody", "dora", "tokens-only"):
        verifications.clear()
        assert await service.login_user(name, "wrong-password") is None, name
        assert len(verifications) == 1, name
    assert verifications[0] != stored.password_hash
    # Positive control: the right password of a real user passes through the same one verification.
    verifications.clear()
    assert await service.login_user("alice", "right-password") is not None
    assert verifications == [stored.password_hash]


async def test_the_stand_in_hash_has_the_real_hashes_parameters(verifications) -> None:
    """The hash unknown names are checked against is made like a real one, so it costs the same to verify."""
    service = SecurityService(MemorySecurityStore(), verify_cache_s=0)
    user = await service.add_user("alice", Role.VIEWER, ("acme",), actor=CLI, password="pw")
    await service.login_user("nobody", "pw")
    stand_in = verifications[-1]
    assert user.password_hash is not None
    assert stand_in.split("$")[1:4] == user.password_hash.split("$")[1:4]


async def test_vehicle_logins_cost_one_verification_revoked_or_not(verifications) -> None:
    """What an external broker's login asks (`login`): a revoked vehicle, a wrong secret and an unknown name
    each run argon2 once, so the answer time does not say which it was."""
    service = SecurityService(MemorySecurityStore(), verify_cache_s=0)
    car = await service.provision("car-1", "acme", actor=CLI)
    gone = await service.provision("car-2", "acme", actor=CLI)
    await service.revoke("car-2", actor=CLI)
    for name, secret in (("car-1", "wrong"), ("car-2", gone.secret), ("car-3", "whatever")):
        verifications.clear()
        assert await service.login(name, secret) is None, name
        assert len(verifications) == 1, name
    verifications.clear()
    assert await service.login("car-1", car.secret) is not None
    assert len(verifications) == 1


async def test_principal_named_follows_revocation_and_removal() -> None:
    service = SecurityService(MemorySecurityStore(), verify_cache_s=0)
    await service.provision("car-1", "acme", actor=CLI)
    await service.add_user("alice", Role.VIEWER, ("acme",), actor=CLI)
    vehicle = await service.principal_named("car-1")
    assert vehicle is not None
    assert vehicle.fleets == {"acme"}
    assert (await service.principal_named("alice")) is not None
    await service.revoke("car-1", actor=CLI)
    await service.remove_user("alice", actor=CLI)
    assert await service.principal_named("car-1") is None
    assert await service.principal_named("alice") is None
    assert await service.principal_named("nobody") is None
