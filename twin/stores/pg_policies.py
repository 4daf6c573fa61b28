"""TimescaleDB's background jobs for the history store, made to follow its options.

The time-series mode ("native" partitions or TimescaleDB hypertables) is chosen by
the database when it migrates (`kernel.PostgresDatabase`); in TimescaleDB mode the
store makes the chunk width, retention, compression and the activity aggregate's
refresh match `HistoryOptions`, at every start.
"""

from __future__ import annotations

from typing import Any

import psycopg

from twin.stores.protocol import HistoryOptions


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
