"""TimescaleDB's background jobs for the history store, made to follow its options.

The time-series mode ("native" partitions or TimescaleDB hypertables) is chosen by
the database when it migrates (`kernel.PostgresDatabase`); in TimescaleDB mode the
store makes the chunk width, retention and compression match `HistoryOptions` at every
start. A job whose settings already match is
left as it is (same job id, same schedule): removing and re-adding every job at every
start would reset their schedules and churn TimescaleDB's job catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from twin.stores.protocol import HistoryOptions

_RETAINED = ("history", "history_1m")


@dataclass(frozen=True)
class _Job:
    proc: str
    table: str
    setting: str | None


def _days(n: int) -> str:
    return f"{n} days"


async def _jobs(conn: psycopg.AsyncConnection[Any]) -> dict[tuple[str, str], _Job]:
    """The policy jobs of this schema's hypertables, by (procedure, table)."""
    cur = await conn.execute(
        """
        SELECT proc_name, hypertable_name,
               (coalesce(config ->> 'drop_after', config ->> 'compress_after'))::interval::text
        FROM timescaledb_information.jobs
        WHERE hypertable_schema = current_schema() AND hypertable_name = ANY(%s)
          AND proc_name IN ('policy_retention', 'policy_compression')
        """,
        (list(_RETAINED),),
    )
    return {(proc, table): _Job(proc, table, setting) for proc, table, setting in await cur.fetchall()}


async def _interval_text(conn: psycopg.AsyncConnection[Any], days: int) -> str:
    cur = await conn.execute("SELECT %s::interval::text", (_days(days),))
    row = await cur.fetchone()
    return str(row[0]) if row else _days(days)


async def apply_policies(conn: psycopg.AsyncConnection[Any], options: HistoryOptions) -> None:
    """Make TimescaleDB's background jobs match the settings; idempotent, run at every start."""
    async with conn.transaction():
        await conn.execute(
            "SELECT set_chunk_time_interval('history', make_interval(hours => %s))", (options.chunk_interval_hours,)
        )
        jobs = await _jobs(conn)
        retention = await _interval_text(conn, options.retention_days) if options.retention_days > 0 else None
        for table in _RETAINED:
            job = jobs.get(("policy_retention", table))
            if job is not None and job.setting == retention:
                continue
            if job is not None:
                await conn.execute("SELECT remove_retention_policy(%s, if_exists => true)", (table,))
            if retention is not None:
                await conn.execute("SELECT add_retention_policy(%s, drop_after => %s::interval)", (table, retention))
        compress = await _interval_text(conn, options.compress_after_days) if options.compress_after_days > 0 else None
        job = jobs.get(("policy_compression", "history"))
        if job is None or job.setting != compress:
            if job is not None:
                await conn.execute("SELECT remove_compression_policy('history', if_exists => true)")
            if compress is not None:
                await conn.execute(
                    "SELECT add_compression_policy('history', compress_after => %s::interval)", (compress,)
                )


async def drop_chunks(conn: psycopg.AsyncConnection[Any], cutoff: float) -> list[str]:
    """Drop the chunks of history and its rollup that end at or before `cutoff` (epoch seconds)."""
    dropped: list[str] = []
    async with conn.transaction():
        for table in _RETAINED:
            cur = await conn.execute("SELECT drop_chunks(%s, older_than => to_timestamp(%s))", (table, cutoff))
            dropped.extend(str(row[0]) for row in await cur.fetchall())
    return dropped
