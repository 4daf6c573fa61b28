from security import secrets as sec


def test_argon2_round_trip_and_mismatch() -> None:
    """A hash verifies its secret only; a malformed hash never raises."""
    digest = sec.hash_password("s3cret")
    assert digest.startswith("$argon2")
    assert sec.verify_password(digest, "s3cret")
    assert not sec.verify_password(digest, "wrong")
    assert not sec.verify_password("not-a-hash", "s3cret")


def test_tokens_are_random_prefixed_and_digested() -> None:
    """Tokens carry the fh_ prefix, differ every time, and are stored as SHA-256 hex."""
    a, b = sec.new_token(), sec.new_token()
    assert a != b
    assert a.startswith("fh_")
    assert len(sec.token_digest(a)) == 64


def test_verify_cache_is_keyed_by_stored_hash_and_expires() -> None:
    """A remembered check hits only for the same name, stored hash and secret, and only until its TTL."""
    now = [0.0]
    cache = sec.VerifyCache(ttl_s=10, clock=lambda: now[0])
    cache.remember("veh-1", "h1", "s")
    assert cache.hit("veh-1", "h1", "s")
    assert not cache.hit("veh-1", "h1", "other")
    assert not cache.hit("veh-1", "h2", "s")  # rotated: a new hash misses at once
    assert not cache.hit("veh-2", "h1", "s")
    now[0] = 11
    assert not cache.hit("veh-1", "h1", "s")


def test_verify_cache_is_bounded() -> None:
    """The cache keeps at most max_entries, forgetting the oldest."""
    cache = sec.VerifyCache(ttl_s=10, max_entries=2)
    for i in range(3):
        cache.remember(f"v{i}", "h", "s")
    assert not cache.hit("v0", "h", "s")
    assert cache.hit("v2", "h", "s")
