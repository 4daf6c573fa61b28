"""Making and checking secrets: vehicle secrets and passwords (argon2), API tokens (SHA-256).

argon2 costs tens of milliseconds of CPU by design. `VerifyCache` remembers a
successful verification for a short time, keyed by a fast keyed hash of the secret, so
that a reconnect storm of thousands of vehicles costs one argon2 run per vehicle and
not one per attempt; callers run `verify_password` in a thread so the event loop never
stalls on it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# Token prefix: makes a leaked token easy to spot in logs and by secret scanners.
TOKEN_PREFIX = "fh_"  # noqa: S105 - a public marker, not a secret

# argon2id at OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): vehicle secrets are 256 random
# bits, so the hash guards against a leaked database, not weak guesses; argon2-cffi's default (64 MiB,
# 4 lanes) would cost the hub ~256 MiB of memory at four parallel logins. `verify_password` still
# checks hashes made with other parameters.
_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


def new_secret() -> str:
    """A vehicle secret or generated password: 32 random bytes, URL-safe."""
    return secrets.token_urlsafe(32)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_id() -> str:
    return secrets.token_hex(8)


def hash_password(secret: str) -> str:
    return _hasher.hash(secret)


def verify_password(stored_hash: str, secret: str) -> bool:
    """True when `secret` matches; never raises for a mismatch or a malformed hash."""
    try:
        return bool(_hasher.verify(stored_hash, secret))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class VerifyCache:
    """Recently verified (name, stored hash, secret) triples, for `ttl_s`, at most `max_entries`.

    The key folds in the stored hash, so a rotation or revocation (a new or no hash)
    misses the cache at once; the secret enters only through an HMAC with a per-process
    random key, so the cache holds nothing an attacker could reuse.
    """

    def __init__(self, ttl_s: float, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, float] = OrderedDict()

    def _fingerprint(self, name: str, stored_hash: str, secret: str) -> bytes:
        message = b"\0".join((name.encode(), stored_hash.encode(), secret.encode()))
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def hit(self, name: str, stored_hash: str, secret: str) -> bool:
        if self._ttl <= 0:
            return False
        key = self._fingerprint(name, stored_hash, secret)
        until = self._entries.get(key)
        if until is None:
            return False
        if until < self._clock():
            del self._entries[key]
            return False
        return True

    def remember(self, name: str, stored_hash: str, secret: str) -> None:
        if self._ttl <= 0:
            return
        key = self._fingerprint(name, stored_hash, secret)
        self._entries[key] = self._clock() + self._ttl
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
