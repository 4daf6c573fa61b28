"""PostgreSQL's errors mapped to the store error causes of `kernel.errors`, in this one place."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg
from psycopg_pool import PoolTimeout

from kernel.errors import FENCED_SQLSTATE, Fenced, StoreError, StoreFull, StoreLocked, StoreRejected, StoreUnavailable


def store_error(exc: BaseException) -> StoreError:
    """The cause of a failed PostgreSQL call; unknown failures count as unavailable (retried, never dropped)."""
    if isinstance(exc, StoreError):
        return exc
    detail = f"{type(exc).__name__}: {exc}"
    if getattr(exc, "sqlstate", None) == FENCED_SQLSTATE:
        # A hub worker's write for a partition it no longer holds (cluster/): final, not retried.
        return Fenced(str(exc).splitlines()[0])
    match exc:
        case pg.DiskFull() | pg.OutOfMemory():
            return StoreFull(detail)
        case pg.LockNotAvailable() | pg.DeadlockDetected() | pg.SerializationFailure() | pg.QueryCanceled():
            return StoreLocked(detail)
        case pg.CheckViolation() if "no partition" in str(exc):
            # History for a partition another worker's retention just dropped: recreated on retry.
            return StoreUnavailable(detail)
        case psycopg.DataError() | psycopg.IntegrityError() | pg.ProgramLimitExceeded():
            return StoreRejected(detail)
        case PoolTimeout():
            return StoreUnavailable(f"no PostgreSQL connection available: {exc}")
        case psycopg.OperationalError():
            return StoreUnavailable(f"PostgreSQL connection failed: {exc}")
    return StoreUnavailable(detail)


MAPPED = (psycopg.Error, PoolTimeout)
