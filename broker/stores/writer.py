"""Group commits for the broker store: many packets' changes, one transaction.

The broker hands each packet's changes to `StoreWriter.write` (or `put`, which does not
wait) and acknowledges the packet when they are committed. One task commits whatever has
gathered as soon as the previous commit is done, the cadence of the ingest pipeline's
group commits: under load a commit carries many packets; when idle, a change waits for no
timer. On SQLite both go through the database's one writer connection, one transaction
after the other.

Bounded: at most `max_pending` changes wait. `write` waits for room (the publisher's
acknowledgement is delayed, as ingest delays it); `put` raises `StoreBusy` instead.
A commit that fails because the database is unreachable (`kernel.StoreError`) is retried
with backoff up to `retry_max_s` apart while its callers wait. Any other failure means
something in the batch is wrong: its packets are committed one by one, and only the one
at fault gets the error (its packet stays unacknowledged).

The same task runs the expiry sweep every `sweep_interval_s`, between commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self, TypeVar

import msgspec
import structlog

from broker.stores.metrics import BrokerStoreMetrics
from broker.stores.protocol import BrokerStore, Change, Dropped, Expired
from kernel import LimitExceeded, StoreError

log = structlog.get_logger(__name__)

T = TypeVar("T")


class WriterSettings(msgspec.Struct, frozen=True):
    # Changes waiting for a commit, at most; beyond it `write` waits and `put` raises.
    max_pending: int = 100_000
    # Changes per transaction, at most (a packet's changes are never split).
    batch_max: int = 10_000
    # Longest pause between retries of a commit the database could not take.
    retry_max_s: float = 5.0
    # How often expired sessions and messages are removed.
    sweep_interval_s: float = 5.0
    # On exit, how long to keep retrying the last commits before giving up on them.
    close_timeout_s: float = 10.0


class StoreBusy(LimitExceeded):
    """More changes wait for a commit than `max_pending` allows."""

    def __init__(self, pending: int) -> None:
        super().__init__("store busy", f"{pending} broker store changes wait for a commit")


@dataclass(slots=True)
class _Group:
    """One caller's changes (one packet's, usually), never split between transactions."""

    changes: Sequence[Change]
    done: asyncio.Future[None]


class StoreWriter:
    """Commits the broker's changes to `store` in group commits; an async context manager.

    `on_dropped` hears of queued messages the store dropped to keep a session within its
    limits, `on_expired` of what each sweep removed; both run in the writer's task and
    must not block.
    """

    def __init__(
        self,
        store: BrokerStore,
        settings: WriterSettings | None = None,
        *,
        metrics: BrokerStoreMetrics | None = None,
        on_dropped: Callable[[list[Dropped]], None] | None = None,
        on_expired: Callable[[Expired], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings or WriterSettings()
        self._metrics = metrics
        self._on_dropped = on_dropped
        self._on_expired = on_expired
        self._clock = clock
        self._groups: deque[_Group] = deque()
        self._committing: list[_Group] = []
        self._pending = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Condition()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Changes handed to the writer and not yet committed (the commit under way included)."""
        return self._pending

    async def __aenter__(self) -> Self:
        # Made here, not in __init__: asyncio primitives belong to the loop that uses them.
        self._wake = asyncio.Event()
        self._room = asyncio.Condition()
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="broker-store-writer")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Commit what is pending (retrying for at most `close_timeout_s`), then stop."""
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), self.settings.close_timeout_s)
        except TimeoutError:
            log.warning("broker store: commits still failing at shutdown; their packets stay unacknowledged")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._fail_all(StoreError("the broker store writer has stopped"))

    def put(self, changes: Sequence[Change]) -> asyncio.Future[None]:
        """Queue `changes` for the next commit; the future is done when they are durable.

        Raises `StoreBusy` when `max_pending` changes already wait.
        """
        if self._pending and self._pending + len(changes) > self.settings.max_pending:
            raise StoreBusy(self._pending)
        return self._add(changes)

    async def write(self, changes: Sequence[Change]) -> None:
        """Commit `changes` with the next group; wait for room first when `max_pending` are waiting."""
        async with self._room:
            await self._room.wait_for(
                lambda: not self._pending or self._pending + len(changes) <= self.settings.max_pending
            )
            done = self._add(changes)
        await done

    def _add(self, changes: Sequence[Change]) -> asyncio.Future[None]:
        if self._closing or self._task is None:
            raise StoreError("the broker store writer is not running")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not changes:
            done.set_result(None)
            return done
        self._groups.append(_Group(changes, done))
        self._pending += len(changes)
        self._observe_pending()
        self._wake.set()
        return done

    async def _run(self) -> None:
        next_sweep = self._clock() + self.settings.sweep_interval_s
        while True:
            if not self._groups:
                if self._closing:
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, next_sweep - self._clock()))
            if self._groups:
                await self._commit_next(len(self._groups))
            if self._clock() >= next_sweep and not self._closing:
                # What was handed over before the sweep commits first: a client back since
                # its session's expiry was written must not lose the session to the sweep.
                due = len(self._groups)
                while due > 0:
                    due -= await self._commit_next(due)
                await self._sweep()
                next_sweep = self._clock() + self.settings.sweep_interval_s

    async def _commit_next(self, most: int) -> int:
        """Commit the oldest groups, at most `most` of them; how many were committed."""
        self._committing = self._take(most)
        # Left in `_committing` if cancelled at shutdown: `_fail_all` answers their callers.
        await self._commit(self._committing)
        taken, self._committing = len(self._committing), []
        return taken

    def _take(self, most: int) -> list[_Group]:
        taken: list[_Group] = []
        size = 0
        while (
            self._groups
            and len(taken) < most
            and (not taken or size + len(self._groups[0].changes) <= self.settings.batch_max)
        ):
            group = self._groups.popleft()
            taken.append(group)
            size += len(group.changes)
        return taken

    async def _commit(self, groups: list[_Group]) -> None:
        changes = [change for group in groups for change in group.changes]
        delay = 0.05
        while True:
            try:
                result = await self.store.apply(changes)
                break
            except StoreError as exc:
                # Transient: the callers keep waiting, their packets unacknowledged, while we retry.
                if self._metrics is not None:
                    self._metrics.commit_failures.inc()
                log.warning("broker store commit failed; retrying", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_max_s)
            except Exception as exc:
                if self._metrics is not None:
                    self._metrics.commit_failures.inc()
                if len(groups) > 1:
                    # Something in the batch is wrong: commit its packets one by one, so
                    # only the packet at fault is refused.
                    log.warning("broker store refused a batch; committing its packets apart", error=repr(exc))
                    for group in groups:
                        await self._commit([group])
                    return
                log.error("broker store refused a packet's changes", error=repr(exc), changes=len(changes))
                await self._release(groups, exc)
                return
        if self._metrics is not None:
            self._metrics.commits.inc()
            self._metrics.changes.inc(len(changes))
            self._metrics.queued_dropped.inc(len(result.dropped))
        if result.dropped and self._on_dropped is not None:
            _tell(self._on_dropped, result.dropped)
        await self._release(groups, None)

    async def _release(self, groups: list[_Group], error: Exception | None) -> None:
        for group in groups:
            self._pending -= len(group.changes)
            if not group.done.done():
                if error is None:
                    group.done.set_result(None)
                else:
                    group.done.set_exception(error)
        self._observe_pending()
        async with self._room:
            self._room.notify_all()

    async def _sweep(self) -> None:
        try:
            expired = await self.store.expire(self._clock())
            stats = await self.store.stats()
        except StoreError as exc:
            log.warning("broker store expiry sweep failed; next sweep retries", error=str(exc))
            return
        if self._metrics is not None:
            self._metrics.observe(stats, expired)
        if self._on_expired is not None and (expired.sessions or expired.retained or expired.queued):
            _tell(self._on_expired, expired)

    def _fail_all(self, error: Exception) -> None:
        committing, self._committing = self._committing, []
        self._groups.extendleft(reversed(committing))
        while self._groups:
            group = self._groups.popleft()
            if not group.done.done():
                group.done.set_exception(error)
                # Retrieved here so an abandoned future does not log "exception never retrieved".
                group.done.exception()
        self._pending = 0
        self._observe_pending()

    def _observe_pending(self) -> None:
        if self._metrics is not None:
            self._metrics.pending.set(self._pending)


def _tell(callback: Callable[[T], None], value: T) -> None:
    # A broken listener must not stop the commits everyone else waits for.
    try:
        callback(value)
    except Exception:
        log.exception("broker store listener failed", listener=getattr(callback, "__qualname__", repr(callback)))
