"""The fence: triggers on owner-only tables that check the writer's lease in the same transaction.

A worker's pooled connections carry `fleethub.fence` (see `kernel.PostgresDatabase.set_fence`):
JSON `{"w": worker, "k": partitions, "t": {"<partition>": token}}` of the leases it
believes it holds. Each owner-only row written checks that its vehicle's partition is
among them and that the lease row still has that owner and token and has not expired.
A worker paused past its lease (another took the partition, the token grew) therefore
writes nothing: its statement fails with SQLSTATE FH001 and its transaction rolls back.
Connections without the setting (the embedded hub, tools) are not checked.

Owner-only writes: twins (every write), rule windows (`rule_timers`), new alert episodes
(`alerts` INSERT) and command sends (`commands` UPDATE to state 'sent'). Operator changes
that any node may make (acknowledging an alert, cancelling a command) are not fenced; the
owner hears of them through NOTIFY `fleethub_cluster` and rebuilds that vehicle. Fleet
jobs are turned into commands by one worker, the holder of partition 0 (`JOB_PARTITION`).
"""

from __future__ import annotations

from typing import Any

import psycopg

from cluster.announce import install_live
from cluster.partitions import PARTITION_SQL
from kernel import FENCED_SQLSTATE

CHANNEL = "fleethub_cluster"
# The holder of this partition's lease dispatches fleet jobs.
JOB_PARTITION = 0

_ROW = "CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END"

FENCE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION fleethub_fence() RETURNS trigger LANGUAGE plpgsql AS $fence$
DECLARE
    fence jsonb := nullif(current_setting('fleethub.fence', true), '')::jsonb;
    vid text;
    p integer;
    expected bigint;
BEGIN
    IF fence IS NULL THEN
        RETURN {_ROW};
    END IF;
    IF TG_OP = 'DELETE' THEN vid := OLD.vehicle_id; ELSE vid := NEW.vehicle_id; END IF;
    p := {PARTITION_SQL.format(vid="vid", k="(fence->>'k')::int")};
    expected := (fence->'t'->>p::text)::bigint;
    IF expected IS NULL OR NOT EXISTS (
        SELECT 1 FROM cluster_leases l
        WHERE l.part = p AND l.owner = fence->>'w' AND l.token = expected AND l.expires_at > now()
    ) THEN
        RAISE EXCEPTION 'fenced: worker % does not hold the lease of partition % (vehicle %)',
            fence->>'w', p, vid USING ERRCODE = '{FENCED_SQLSTATE}';
    END IF;
    RETURN {_ROW};
END
$fence$
"""

# Tells the vehicle's owner that another node changed something it holds in memory.
NOTIFY_FUNCTION = f"""
CREATE OR REPLACE FUNCTION fleethub_cluster_notify() RETURNS trigger LANGUAGE plpgsql AS $notify$
BEGIN
    PERFORM pg_notify('{CHANNEL}', TG_ARGV[0] || ' ' ||
        coalesce(nullif(current_setting('fleethub.fence', true), '')::jsonb->>'w', '') || ' ' ||
        coalesce(to_jsonb(NEW)->>'vehicle_id', ''));
    RETURN NEW;
END
$notify$
"""

TRIGGERS = (
    "CREATE OR REPLACE TRIGGER fleethub_fence BEFORE INSERT OR UPDATE ON twins "
    "FOR EACH ROW EXECUTE FUNCTION fleethub_fence()",
    "CREATE OR REPLACE TRIGGER fleethub_fence BEFORE INSERT OR UPDATE OR DELETE ON rule_timers "
    "FOR EACH ROW EXECUTE FUNCTION fleethub_fence()",
    "CREATE OR REPLACE TRIGGER fleethub_fence BEFORE INSERT ON alerts FOR EACH ROW EXECUTE FUNCTION fleethub_fence()",
    "CREATE OR REPLACE TRIGGER fleethub_fence BEFORE UPDATE ON commands "
    "FOR EACH ROW WHEN (NEW.state = 'sent') EXECUTE FUNCTION fleethub_fence()",
    "CREATE OR REPLACE TRIGGER fleethub_notify AFTER INSERT OR UPDATE ON commands "
    "FOR EACH ROW EXECUTE FUNCTION fleethub_cluster_notify('commands')",
    "CREATE OR REPLACE TRIGGER fleethub_notify AFTER UPDATE ON alerts "
    "FOR EACH ROW EXECUTE FUNCTION fleethub_cluster_notify('alerts')",
    "CREATE OR REPLACE TRIGGER fleethub_notify AFTER INSERT OR UPDATE ON command_jobs "
    "FOR EACH ROW EXECUTE FUNCTION fleethub_cluster_notify('jobs')",
)

# Workers starting together take turns (CREATE OR REPLACE on one function is not concurrent-safe).
_LOCK = "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':fleethub:cluster'))"


async def install(conn: psycopg.AsyncConnection[Any], partitions: int) -> int:
    """Create the fence and notify triggers and the partitions' lease rows; the partition count found.

    The count is the database's once set: a worker configured differently must not join.
    """
    async with conn.transaction():
        await conn.execute(_LOCK)
        await conn.execute(FENCE_FUNCTION.encode())
        await conn.execute(NOTIFY_FUNCTION.encode())
        for statement in TRIGGERS:
            await conn.execute(statement.encode())
        await install_live(conn)
        cur = await conn.execute("SELECT count(*) FROM cluster_leases")
        row = await cur.fetchone()
        existing = int(row[0]) if row else 0
        if existing == 0:
            await conn.execute(
                "INSERT INTO cluster_leases (part) SELECT generate_series(0, %s - 1) ON CONFLICT DO NOTHING",
                (partitions,),
            )
            existing = partitions
    return existing
