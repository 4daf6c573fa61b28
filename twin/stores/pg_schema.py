"""The history store's PostgreSQL options, and the TimescaleDB policies that follow them.

The time-series mode ("native" partitions or TimescaleDB hypertables) is chosen by
the database when it migrates (`kernel.PostgresDatabase`); this module makes
TimescaleDB's background jobs (chunk width, retention, compression, the activity
aggregate's refresh) match the settings, at every start.
"""

from __future__ import annotations

from typing import Any

import msgspec
import psycopg


class HistoryOptions(msgspec.Struct, frozen=True):
    """How history is kept: retention everywhere; partitions and compression on PostgreSQL."""

    # 0 keeps history forever.
    retention_days: int = 730
    # Hypertable chunk / native partition width; divides a day or is whole days.
    chunk_interval_hours: int = 24
    # TimescaleDB only; 0 leaves chunks uncompressed.
    compress_after_days: int = 7
    # Native partitioning only: partitions kept ready ahead of the current one.
    premake_partitions: int = 3


def _days(n: int) -> str:
    return f"{n} days"


async def apply_policies(conn: psycopg.AsyncConnection[Any], options: HistoryOptions) -> None:
    """Make TimescaleDB's background jobs match the settings; idempotent, run at every start."""
    async with conn.transaction():
        await conn.execute(
            "SELECT set_chunk_time_interval('history', make_interval(hours => %s))", (options.chunk_interval_hours,)
        )
        for table in ("history", "history_1m", "history_activity_1m"):
            await conn.execute("SELECT remove_retention_policy(%s, if_exists => true)", (table,))
            if options.retention_days > 0:
                await conn.execute(
                    "SELECT add_retention_policy(%s, drop_after => %s::interval)",
                    (table, _days(options.retention_days)),
                )
        await conn.execute("SELECT remove_compression_policy('history', if_exists => true)")
        if options.compress_after_days > 0:
            await conn.execute(
                "SELECT add_compression_policy('history', compress_after => %s::interval)",
                (_days(options.compress_after_days),),
            )
        # Re-materialise the last two days every minute: late and backfilled rows within
        # that window reach the aggregate; older backfill waits for a manual refresh.
        await conn.execute(
            "SELECT add_continuous_aggregate_policy('history_activity_1m', "
            "start_offset => INTERVAL '2 days', end_offset => INTERVAL '1 minute', "
            "schedule_interval => INTERVAL '1 minute', if_not_exists => true)"
        )
