"""SQLite's errors mapped to the store error causes of `kernel.errors`, in this one place."""

from __future__ import annotations

import sqlite3

from kernel.errors import StoreError, StoreFull, StoreLocked, StoreRejected, StoreUnavailable

# Primary result codes (the low byte of an extended code), https://sqlite.org/rescode.html
_BUSY, _LOCKED, _FULL = 5, 6, 13
_TOOBIG, _CONSTRAINT, _MISMATCH, _RANGE = 18, 19, 20, 25

# What is wrong with the value written, not with the database.
_REJECTED = frozenset({_TOOBIG, _CONSTRAINT, _MISMATCH, _RANGE})


def store_error(exc: BaseException) -> StoreError:
    """The cause of a failed SQLite call; unknown failures count as unavailable (retried, never dropped)."""
    if isinstance(exc, StoreError):
        return exc
    detail = f"{type(exc).__name__}: {exc}"
    # Raised while binding a parameter: "Python int too large to convert to SQLite INTEGER".
    if isinstance(exc, OverflowError | sqlite3.IntegrityError | sqlite3.DataError):
        return StoreRejected(detail)
    if isinstance(exc, sqlite3.Error):
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        if code in (_BUSY, _LOCKED):
            return StoreLocked(detail)
        if code == _FULL:
            return StoreFull(detail)
        if code in _REJECTED:
            return StoreRejected(detail)
        # The codes are absent on errors raised by the sqlite3 module itself.
        text = str(exc).lower()
        if "locked" in text or "busy" in text:
            return StoreLocked(detail)
        if "disk is full" in text:
            return StoreFull(detail)
        if "binding parameter" in text:
            # A value SQLite cannot take (InterfaceError or ProgrammingError by version).
            return StoreRejected(detail)
    return StoreUnavailable(detail)


MAPPED = (sqlite3.Error, OverflowError)
