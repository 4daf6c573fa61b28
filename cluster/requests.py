"""Operator writes of a twin asked for on a node that does not own the vehicle, applied by its owner.

Only the holder of a vehicle's partition lease may write its twin (the fence). A desired
or tags patch, or a twin created by provisioning, that reaches an API node or a worker
that does not own the vehicle goes through the `cluster_requests` table:

1. the asking node stores the write (vehicle, encoded write, audit entry as data, itself
   as requester, a deadline) and NOTIFYs `fleethub_requests`;
2. the owner claims it (`FOR UPDATE SKIP LOCKED`, with its lease's token) and applies it
   through its own twin service, as a local call: the same checks, the same audit entry,
   the same delta published to the vehicle;
3. the answer (the twin document, or the error) is stored by `fleethub_request_done` in
   the same transaction as the twin change, and only while the claim is still this
   owner's: if the asking node withdrew the request or another owner claimed it
   meanwhile, the function raises the fence's SQLSTATE and the change rolls back. So a
   write is applied at most once, and never after its client was told it failed;
4. the asking node hears the NOTIFY (or polls), answers its HTTP call with what the
   owner answered, and deletes the row.

The asking node withdraws a request nobody claimed within `cluster.forward_timeout_s`
(or whose claimer lost its lease), and any request after `forward_outcome_timeout_s`;
its client gets 503 with Retry-After. Rows a dead node left behind are deleted after
`forward_keep_s`. No new network path: nodes meet only in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import secrets
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import msgspec
import structlog

from cluster.listening import ListenMetrics, ListenState, hold_listen
from cluster.partitions import partition_of
from cluster.settings import ClusterSettings
from kernel import (
    FENCED_SQLSTATE,
    FleethubError,
    InvalidPayload,
    LimitExceeded,
    NotFound,
    PostgresDatabase,
    StoreError,
    StoreRejected,
    cancel_and_wait,
    is_fenced,
)
from security import TwinWriteAudit
from twin import (
    AuditRecord,
    OperatorWrite,
    OwnerUnavailable,
    TwinDocument,
    TwinError,
    TwinService,
    TwinState,
    VersionConflict,
    to_document,
)

if TYPE_CHECKING:
    from cluster.worker import ClusterWorker

log = structlog.get_logger(__name__)

CHANNEL = "fleethub_requests"

OUTCOME_FUNCTION = f"""
CREATE OR REPLACE FUNCTION fleethub_request_done(rid text, worker text, token bigint, code integer, answer text)
RETURNS void LANGUAGE plpgsql AS $done$
BEGIN
    UPDATE cluster_requests SET state = 'done', status = code, outcome = answer
    WHERE id = rid AND state = 'claimed' AND claimed_by = worker AND claim_token = token;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'request % is no longer claimed by worker %', rid, worker USING ERRCODE = '{FENCED_SQLSTATE}';
    END IF;
    PERFORM pg_notify('{CHANNEL}', 'done ' || rid);
END
$done$
"""
_LOCK = "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':fleethub:requests'))"

_PUT = (
    "INSERT INTO cluster_requests (id, part, vehicle_id, write, audit, requester, deadline) "
    "VALUES (%s, %s, %s, %s, %s, %s, now() + make_interval(secs => %s))"
)
_NEW = f"SELECT pg_notify('{CHANNEL}', 'new ' || %s)"
# Waiting rows, and rows claimed under a lease other than the one this worker holds now (a
# dead or fenced claimer's): whatever that claimer still commits fails the claim check.
_CLAIM = """
UPDATE cluster_requests r SET state = 'claimed', claimed_by = %(me)s, claim_token = t.token
FROM unnest(%(parts)s::int[], %(tokens)s::bigint[]) AS t(part, token)
WHERE r.part = t.part AND r.id IN (
    SELECT q.id FROM cluster_requests q
    JOIN unnest(%(parts)s::int[], %(tokens)s::bigint[]) AS h(part, token) ON h.part = q.part
    WHERE q.deadline > now() AND (
        q.state = 'waiting'
        OR (q.state = 'claimed' AND (q.claimed_by IS DISTINCT FROM %(me)s OR q.claim_token IS DISTINCT FROM h.token))
    )
    ORDER BY q.created_at LIMIT %(limit)s FOR UPDATE OF q SKIP LOCKED
)
RETURNING r.id, r.write, r.audit, r.claim_token
"""
_DONE = "SELECT fleethub_request_done(%s, %s, %s, %s, %s)"
_RELEASE = (
    "UPDATE cluster_requests SET state = 'waiting', claimed_by = NULL, claim_token = NULL "
    "WHERE id = %s AND state = 'claimed' AND claimed_by = %s AND claim_token = %s"
)
_READ = "SELECT state, status, outcome FROM cluster_requests WHERE id = %s"
# Unclaimed, or claimed by a worker that no longer holds that lease: nobody can apply it now.
# With `force`, a live claim too: its owner's commit then fails the claim check.
_WITHDRAW = """
UPDATE cluster_requests r SET state = 'withdrawn'
WHERE r.id = %(id)s AND (
    r.state = 'waiting'
    OR (r.state = 'claimed' AND (%(force)s OR NOT EXISTS (
        SELECT 1 FROM cluster_leases l
        WHERE l.part = r.part AND l.owner = r.claimed_by AND l.token = r.claim_token AND l.expires_at > now()
    )))
)
RETURNING r.id
"""
_FORGET = "DELETE FROM cluster_requests WHERE id = %s"
_SWEEP = "DELETE FROM cluster_requests WHERE created_at < now() - make_interval(secs => %s)"

_encode = msgspec.json.Encoder().encode
_write = msgspec.json.Decoder(OperatorWrite)
_audit = msgspec.json.Decoder(TwinWriteAudit)
_document = msgspec.json.Decoder(TwinDocument)


class Failure(msgspec.Struct, frozen=True, omit_defaults=True):
    """An error the owner answered with, as data; the asking node raises the same error again."""

    kind: str
    detail: str
    reason: str | None = None
    expected: int | None = None
    current: int | None = None


_failure = msgspec.json.Decoder(Failure)


def failure_of(exc: Exception) -> tuple[int, Failure]:
    """The HTTP status (for people reading the table) and the data of an error a local write raised."""
    match exc:
        case NotFound():
            return 404, Failure("not_found", str(exc))
        case VersionConflict():
            return 409, Failure("version_conflict", str(exc), expected=exc.expected, current=exc.current)
        case LimitExceeded():
            return 422, Failure("limit_exceeded", exc.detail, reason=exc.reason)
        case InvalidPayload():
            return 422, Failure("invalid_payload", exc.detail, reason=exc.reason)
        case StoreRejected():
            return 422, Failure("store_rejected", str(exc))
        case FleethubError():
            return 400, Failure("refused", str(exc))
        case _:
            return 500, Failure("internal", f"{type(exc).__name__}: {exc}")


def error_of(failure: Failure) -> Exception:
    """The error `failure_of` described, so the API answers with the same problem document."""
    match failure.kind:
        case "not_found":
            return NotFound(failure.detail)
        case "version_conflict":
            return VersionConflict(failure.expected or 0, failure.current or 0)
        case "limit_exceeded":
            return LimitExceeded(failure.reason or "", failure.detail)
        case "invalid_payload":
            return InvalidPayload(failure.reason or "", failure.detail)
        case "store_rejected":
            return StoreRejected(failure.detail)
        case "refused":
            return TwinError(failure.detail)
        case _:
            return RuntimeError(failure.detail)


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: str
    # As stored: decoded when applied, so a row this version cannot read is answered, not stuck.
    write: str
    audit: str | None
    token: int


class ForwardedWrites:
    """Both sides of forwarded twin writes on one node (a `twin.WriteRoute`); an async context manager."""

    def __init__(
        self,
        settings: ClusterSettings,
        db: PostgresDatabase,
        service: TwinService,
        worker: ClusterWorker,
        *,
        metrics: ListenMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.service = service
        self.worker = worker
        # Requests this node asked for and waits on, woken by the owner's NOTIFY.
        self._waiting: dict[str, asyncio.Event] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.forwarded = 0
        self.applied = 0
        self.listen = ListenState("requests", metrics)

    async def __aenter__(self) -> Self:
        async with self.db.connection() as conn, conn.transaction():
            await conn.execute(_LOCK)
            await conn.execute(OUTCOME_FUNCTION.encode())
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._listen(), name="cluster-requests-listen"))
        if self.settings.role == "worker":
            self._tasks.append(loop.create_task(self._serve(), name="cluster-requests-serve"))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

    @property
    def retry_after_s(self) -> int:
        """A partition without a live owner has one again within a lease and a heartbeat."""
        return math.ceil(self.settings.lease_s + self.settings.heartbeat_s)

    # -- the asking node (twin.WriteRoute) ----------------------------------------------

    def here(self, vehicle_id: str) -> bool:
        return partition_of(vehicle_id, self.settings.partitions) in self.worker.ready

    async def forward(
        self, write: OperatorWrite, audit: AuditRecord | None, *, since: float | None = None
    ) -> TwinDocument:
        if audit is not None and not isinstance(audit, TwinWriteAudit):
            raise TypeError(f"only a TwinWriteAudit travels with a forwarded write, got {type(audit).__name__}")
        # A write first tried here (and fenced off) keeps the deadlines it was asked with.
        started = time.monotonic() if since is None else since
        claim_within = self.settings.forward_timeout_s - (time.monotonic() - started)
        if claim_within <= 0:
            raise OwnerUnavailable(
                f"the vehicle's partition moved while the write was applied here, and no time is left "
                f"of {self.settings.forward_timeout_s:.1f} s to hand it to the new owner; nothing was written",
                self.retry_after_s,
            )
        rid = secrets.token_hex(16)
        part = partition_of(write.vehicle_id, self.settings.partitions)
        woken = self._waiting[rid] = asyncio.Event()
        try:
            async with self.db.connection() as conn, conn.transaction():
                await conn.execute(
                    _PUT,
                    (
                        rid,
                        part,
                        write.vehicle_id,
                        _encode(write).decode(),
                        _encode(audit).decode() if audit is not None else None,
                        self.worker.worker_id,
                        claim_within,
                    ),
                )
                await conn.execute(_NEW, (str(part),))
            self.forwarded += 1
            return await self._answer(rid, woken, started)
        finally:
            del self._waiting[rid]
            # Done, withdrawn, or abandoned by a client that went away: a deleted request is never applied.
            try:
                async with self.db.connection() as conn:
                    await conn.execute(_FORGET, (rid,))
            except StoreError as exc:
                log.warning("could not delete a forwarded write; it is swept later", request=rid, error=str(exc))

    async def _answer(self, rid: str, woken: asyncio.Event, started: float) -> TwinDocument:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), self.settings.forward_poll_s)
            woken.clear()
            async with self.db.connection() as conn:
                cur = await conn.execute(_READ, (rid,))
                row = await cur.fetchone()
            if row is not None and row[0] == "done":
                if row[1] == 200:
                    return _document.decode(row[2])
                raise error_of(_failure.decode(row[2]))
            waited = time.monotonic() - started
            # Gone (swept) or withdrawn already: nobody can apply it any more.
            gone = row is None or row[0] == "withdrawn"
            if gone or waited >= self.settings.forward_timeout_s:
                force = waited >= self.settings.forward_outcome_timeout_s
                if gone or await self._withdraw(rid, force):
                    raise OwnerUnavailable(
                        f"no worker holding this vehicle's partition applied the write within "
                        f"{waited:.1f} s; nothing was written",
                        self.retry_after_s,
                    )

    async def _withdraw(self, rid: str, force: bool) -> bool:
        """True when the request can no longer be applied: the caller may say it failed."""
        async with self.db.connection() as conn:
            cur = await conn.execute(_WITHDRAW, {"id": rid, "force": force})
            return await cur.fetchone() is not None

    # -- the owner ----------------------------------------------------------------------

    async def _serve(self) -> None:
        swept = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.forward_poll_s)
            self._wake.clear()
            claimed: list[_Claimed] = []
            try:
                claimed = await self._claim()
                if claimed:
                    await asyncio.gather(*(self._apply(c) for c in claimed))
                if time.monotonic() - swept > self.settings.forward_keep_s / 10:
                    swept = time.monotonic()
                    await self._sweep()
            except StoreError as exc:
                log.error("forwarded writes: claiming failed", error=str(exc))
            # The loop outlives a bug in one pass: what it claimed is withdrawn by the asking nodes in time.
            except Exception:
                log.exception("forwarded writes: a pass failed")
            if len(claimed) >= self.settings.forward_batch:
                self._wake.set()

    async def _claim(self) -> list[_Claimed]:
        tokens = self.worker.ownership.tokens
        held = {p: tokens[p] for p in self.worker.ready if p in tokens}
        if not held:
            return []
        args = {
            "me": self.worker.worker_id,
            "parts": list(held),
            "tokens": list(held.values()),
            "limit": self.settings.forward_batch,
        }
        async with self.db.connection() as conn:
            cur = await conn.execute(_CLAIM, args)
            rows = await cur.fetchall()
        return [_Claimed(str(r[0]), r[1], r[2], int(r[3])) for r in rows]

    async def _apply(self, claimed: _Claimed) -> None:
        """Apply one claimed write as a local call; its answer commits with the change."""
        outcome = functools.partial(self._outcome, claimed)
        try:
            write = _write.decode(claimed.write)
            audit = _audit.decode(claimed.audit) if claimed.audit else None
            await self.service.apply(write, audit=audit, outcome=outcome)
            self.applied += 1
        except StoreError as exc:
            if isinstance(exc, StoreRejected) and not is_fenced(exc):
                await self._fail(claimed, exc)
                return
            # Not committed (the batch was fenced off, the hub is stopping, the store is down): give
            # it back for another try before its deadline, by this owner or the next.
            await self._release(claimed)
        except Exception as exc:
            await self._fail(claimed, exc)

    def _outcome(self, claimed: _Claimed, state: TwinState) -> functools.partial[tuple[str, tuple[Any, ...]]]:
        """The statement that stores the answer, made from the changed twin as the local call answers it."""
        doc = to_document(state, now=self.service.clock(), reporting_window_s=self.service.settings.reporting_window_s)
        return functools.partial(_done_statement, claimed.id, self.worker.worker_id, claimed.token, 200, doc)

    async def _fail(self, claimed: _Claimed, exc: Exception) -> None:
        status, failure = failure_of(exc)
        sql, args = _done_statement(claimed.id, self.worker.worker_id, claimed.token, status, failure, "%s")
        try:
            async with self.db.connection() as conn:
                await conn.execute(sql.encode(), args)
        except StoreError as error:
            # Withdrawn meanwhile (fenced) or the store is down: the asking node answers 503 itself.
            log.info("forwarded write: answer not stored", request=claimed.id, error=str(error))

    async def _release(self, claimed: _Claimed) -> None:
        with contextlib.suppress(StoreError):
            async with self.db.connection() as conn:
                await conn.execute(_RELEASE, (claimed.id, self.worker.worker_id, claimed.token))

    async def _sweep(self) -> None:
        async with self.db.connection() as conn:
            await conn.execute(_SWEEP, (self.settings.forward_keep_s,))

    # -- notifications ------------------------------------------------------------------

    async def _listen(self) -> None:
        # While it is down both sides poll every forward_poll_s: slower, still correct. Once it is
        # back, whatever was announced meanwhile is looked for.
        await hold_listen(self.db.url, self.listen, CHANNEL, self._noted, opened=self._wake_all)

    def status(self) -> dict[str, Any]:
        """For `/healthz`: the LISTEN connection and the requests this node waits on."""
        return {
            **self.listen.status(),
            "waiting": len(self._waiting),
            "forwarded": self.forwarded,
            "applied": self.applied,
        }

    async def _noted(self, payload: str) -> None:
        kind, _, what = payload.partition(" ")
        if kind == "done":
            woken = self._waiting.get(what)
            if woken is not None:
                woken.set()
        elif kind == "new" and what.isdigit() and int(what) in self.worker.ready:
            self._wake.set()

    def _wake_all(self) -> None:
        self._wake.set()
        for woken in self._waiting.values():
            woken.set()


def _done_statement(
    rid: str, worker: str, token: int, status: int, answer: object, mark: str, *, jsonb: bool = False
) -> tuple[str, tuple[Any, ...]]:
    """`fleethub_request_done` as a twin batch statement (see `twin.Statement`)."""
    sql = _DONE.replace("%s", mark)
    return sql, (rid, worker, token, status, _encode(answer).decode())
