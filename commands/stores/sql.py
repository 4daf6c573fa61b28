"""The commands store on SQLite or PostgreSQL: the same tables (migration 0020), the same SQL.

Statements go through `kernel.Sql`, which sends them in the backend's form; reads take
a reader or a pooled connection, writes are one transaction with their audit entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from commands.model import Command, CommandState, Job, JobState
from commands.stores.protocol import CommandQuery
from kernel import PreconditionFailed, SqlStore, Statement, VehicleSet, vehicles_where
from security import AuditEntry, audit_statement

_encode = msgspec.json.Encoder().encode
_decode_command = msgspec.json.Decoder(Command).decode
_decode_job = msgspec.json.Decoder(Job).decode

UPSERT_COMMAND = """
INSERT INTO commands (id, vehicle_id, name, state, job_id, idempotency_key, created_at, doc)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET state = excluded.state, doc = excluded.doc
WHERE commands.state IN ('queued', 'sent')
"""
# A closed command stays closed: another node may have cancelled it while its owner was sending it.
UPSERT_JOB = """
INSERT INTO command_jobs (id, state, created_at, doc) VALUES (?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET state = excluded.state, doc = excluded.doc
"""
_OPEN_COMMANDS = "SELECT doc FROM commands WHERE state IN ('queued', 'sent') ORDER BY created_at, id"
_OPEN_COMMANDS_OF = "SELECT doc FROM commands WHERE state IN ('queued', 'sent') AND {condition} ORDER BY created_at, id"
COUNT_STATES = "SELECT state, count(*) FROM commands WHERE job_id = ? GROUP BY state"
_OPEN_JOBS = "SELECT doc FROM command_jobs WHERE state IN (?, ?) ORDER BY created_at, id"


def command_row(c: Command) -> tuple[Any, ...]:
    return (c.id, c.vehicle_id, c.name, c.state.value, c.job_id, c.idempotency_key, c.created_at, _encode(c).decode())


def job_row(j: Job) -> tuple[Any, ...]:
    return (j.id, j.state.value, j.created_at, _encode(j).decode())


def _where(query: CommandQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if query.vehicle_id is not None:
        clauses.append("vehicle_id = ?")
        args.append(query.vehicle_id)
    if query.job_id is not None:
        clauses.append("job_id = ?")
        args.append(query.job_id)
    if query.states:
        clauses.append(f"state IN ({', '.join('?' for _ in query.states)})")
        args.extend(s.value for s in query.states)
    if query.name is not None:
        clauses.append("name = ?")
        args.append(query.name)
    if query.since is not None:
        clauses.append("created_at >= ?")
        args.append(query.since)
    if query.until is not None:
        clauses.append("created_at < ?")
        args.append(query.until)
    if query.before is not None:
        # Keyset paging: strictly older than the anchor command, ties broken by id.
        clauses.append(
            "(created_at < (SELECT created_at FROM commands WHERE id = ?) OR "
            "(created_at = (SELECT created_at FROM commands WHERE id = ?) AND id < ?))"
        )
        args.extend([query.before, query.before, query.before])
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def _query_sql(query: CommandQuery) -> tuple[str, list[Any]]:
    where, args = _where(query)
    return f"SELECT doc FROM commands{where} ORDER BY created_at DESC, id DESC LIMIT ?", [*args, query.limit]


def _jobs_sql(limit: int, before: str | None) -> tuple[str, list[Any]]:
    if before is None:
        return "SELECT doc FROM command_jobs ORDER BY created_at DESC, id DESC LIMIT ?", [limit]
    sql = (
        "SELECT doc FROM command_jobs WHERE created_at < (SELECT created_at FROM command_jobs WHERE id = ?) OR "
        "(created_at = (SELECT created_at FROM command_jobs WHERE id = ?) AND id < ?) "
        "ORDER BY created_at DESC, id DESC LIMIT ?"
    )
    return sql, [before, before, before, limit]


class SqlCommandStore(SqlStore):
    """Commands and jobs in the hub's database, SQLite or PostgreSQL (see `kernel.Database`)."""

    async def _docs(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return [row[0] for row in await self._sql.fetch(sql, tuple(args))]

    async def write(
        self, commands: Sequence[Command] = (), jobs: Sequence[Job] = (), audit: Sequence[AuditEntry] = ()
    ) -> None:
        statements = []
        if commands:
            statements.append(Statement(UPSERT_COMMAND, [command_row(c) for c in commands], many=True))
        if jobs:
            statements.append(Statement(UPSERT_JOB, [job_row(j) for j in jobs], many=True))
        statements += [audit_statement(entry, self._sql.dialect) for entry in audit]
        if statements:
            await self._sql.transaction(statements)

    async def count_states(self, job_id: str) -> dict[CommandState, int]:
        rows = await self._sql.fetch(COUNT_STATES, (job_id,))
        return {CommandState(state): int(n) for state, n in rows}

    async def change(self, command: Command, expected: CommandState, *, audit: AuditEntry | None = None) -> bool:
        sql = "UPDATE commands SET state = ?, doc = ? WHERE id = ? AND state = ?"
        args = (command.state.value, _encode(command).decode(), command.id, expected.value)
        statements = [Statement(sql, args, expect=1)]
        if audit is not None:
            statements.append(audit_statement(audit, self._sql.dialect))
        try:
            await self._sql.transaction(statements)
        except PreconditionFailed:
            return False
        return True

    async def get(self, command_id: str) -> Command | None:
        docs = await self._docs("SELECT doc FROM commands WHERE id = ?", (command_id,))
        return _decode_command(docs[0]) if docs else None

    async def by_key(self, vehicle_id: str, idempotency_key: str) -> Command | None:
        docs = await self._docs(
            "SELECT doc FROM commands WHERE vehicle_id = ? AND idempotency_key = ?", (vehicle_id, idempotency_key)
        )
        return _decode_command(docs[0]) if docs else None

    async def query(self, query: CommandQuery) -> list[Command]:
        sql, args = _query_sql(query)
        return [_decode_command(d) for d in await self._docs(sql, args)]

    async def open_commands(self, vehicles: VehicleSet | None = None) -> list[Command]:
        if vehicles is None:
            return [_decode_command(d) for d in await self._docs(_OPEN_COMMANDS)]
        chosen = vehicles_where(vehicles, "vehicle_id", self._sql.dialect)
        if chosen is None:
            # SQLite has no md5: the partitions are chosen here.
            found = [_decode_command(d) for d in await self._docs(_OPEN_COMMANDS)]
            return [c for c in found if vehicles(c.vehicle_id)]
        condition, arg = chosen
        return [_decode_command(d) for d in await self._docs(_OPEN_COMMANDS_OF.format(condition=condition), (arg,))]

    async def get_job(self, job_id: str) -> Job | None:
        docs = await self._docs("SELECT doc FROM command_jobs WHERE id = ?", (job_id,))
        return _decode_job(docs[0]) if docs else None

    async def jobs(self, *, limit: int = 100, before: str | None = None) -> list[Job]:
        sql, args = _jobs_sql(limit, before)
        return [_decode_job(d) for d in await self._docs(sql, args)]

    async def open_jobs(self) -> list[Job]:
        docs = await self._docs(_OPEN_JOBS, (JobState.RUNNING.value, JobState.PAUSED.value))
        return [_decode_job(d) for d in docs]
