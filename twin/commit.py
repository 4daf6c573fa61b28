"""Stage 3, commit: a batch in one transaction, store failures handled by their cause.

Transient failures (unavailable, locked, full) are retried with backoff while the
batch's acknowledgements wait. A deterministic one (the database refuses a value) is
raised as `Rejected` for the pipeline to isolate. After a stop is asked for, retries go
on until its deadline and then give up with `Abandoned`: nothing is acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from kernel import Fenced, StoreError, StoreRejected
from twin.batch import Batch
from twin.metrics import IngestMetrics
from twin.stores.protocol import Store

log = structlog.get_logger(__name__)

T = TypeVar("T")


class Rejected(Exception):
    """The database refused a value in the batch: split it to find the item."""

    def __init__(self, error: StoreError) -> None:
        super().__init__(str(error))
        self.error = error


class Abandoned(Exception):
    """The stop deadline passed while the store kept failing: the batch is left unacknowledged."""


class Committer:
    def __init__(
        self,
        store: Store,
        *,
        retry_max_s: float,
        shutdown_timeout_s: float,
        metrics: IngestMetrics | None,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.retry_max_s = retry_max_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.metrics = metrics
        self.clock = clock
        self.last_commit_at: float | None = None
        self.last_error: str | None = None
        self._stop_requested = asyncio.Event()
        self._stop_deadline: float | None = None

    def stop(self) -> None:
        """From now on, retry only until `shutdown_timeout_s` from now."""
        if self._stop_deadline is None:
            self._stop_deadline = asyncio.get_running_loop().time() + self.shutdown_timeout_s
        self._stop_requested.set()

    def past_deadline(self) -> bool:
        return self._stop_deadline is not None and asyncio.get_running_loop().time() >= self._stop_deadline

    async def commit(self, batch: Batch) -> None:
        """Commit `batch`; raises `Rejected` when the database refuses a value in it, `Abandoned`
        when the stop deadline passes first."""
        twins = list(batch.dirty.values())
        started = time.perf_counter()

        def write() -> Awaitable[None]:
            return self.store.write_batch(twins, batch.history, batch.presence, batch.statements)

        try:
            await self.retrying("commit", write)
        except (Abandoned, asyncio.CancelledError):
            raise
        except Fenced as exc:
            # A hub worker that lost the partition's lease (cluster/): retrying cannot succeed, and
            # the batch's messages belong to the new owner. Left unacknowledged, they go there.
            log.warning("batch fenced off: this worker no longer owns its vehicles", error=str(exc))
            raise Abandoned from exc
        except StoreRejected as exc:
            raise Rejected(exc) from exc
        # Not a store error: a value our own code cannot encode, which is as deterministic.
        except Exception as exc:
            if isinstance(exc, StoreError):
                raise
            raise Rejected(StoreRejected(f"{type(exc).__name__}: {exc}")) from exc
        self.last_commit_at = self.clock()
        if self.metrics:
            self.metrics.commit_seconds.observe(time.perf_counter() - started)
            self.metrics.batch_size.observe(len(batch.history) + len(twins))

    async def retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, repeated with backoff while it fails transiently, until the stop deadline."""
        delay = 0.05
        while True:
            try:
                result = await call()
            except StoreError as exc:
                if isinstance(exc, StoreRejected | Fenced):
                    raise
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self.metrics:
                    self.metrics.commit_failures.inc()
                if self.past_deadline():
                    log.error(f"{what} failed at shutdown; giving up", error=self.last_error)
                    raise Abandoned from exc
                log.error(f"{what} failed, retrying", error=self.last_error, retry_in_s=delay)
                await self._pause(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            self.last_error = None
            return result

    async def _pause(self, delay: float) -> None:
        """Sleep `delay`, but no later than the stop deadline once a stop is asked for."""
        if self._stop_deadline is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), delay)
            return
        remaining = self._stop_deadline - asyncio.get_running_loop().time()
        await asyncio.sleep(max(0.0, min(delay, remaining)))
