"""The 1-minute rollup in PostgreSQL: refreshing it, and answering aggregates from it.

Every batch marks the (vehicle, minute) pairs it wrote as dirty, in the same
transaction. A refresh recomputes dirty minutes from history and clears the marks it
caught up with. An aggregate query reads clean minutes from the rollup and recomputes
dirty minutes (and the partial minutes at the edges of the range) from history in the
same statement, so answers are exact whether or not maintenance has run; maintenance
only makes them fast.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, LiteralString

import psycopg

from twin.model import PATH_SEP
from twin.stores.aggregates import field_path, finish, output_plan
from twin.stores.protocol import AggregateRow, Bucket, FieldAgg

MARK_DIRTY = """
INSERT INTO history_1m_dirty (vehicle_id, bucket)
SELECT DISTINCT vehicle_id, date_bin('1 minute', to_timestamp(ts), TIMESTAMPTZ 'epoch')
FROM fh_history_stage ORDER BY 1, 2
ON CONFLICT (vehicle_id, bucket) DO UPDATE SET gen = history_1m_dirty.gen + 1
"""

_PICK = "SELECT vehicle_id, bucket, gen FROM history_1m_dirty WHERE bucket < %s LIMIT %s"

# Flatten every row of the picked minutes into numeric leaves (through objects only,
# never into arrays, exactly like twin.paths.get_path), then fold them per minute and
# field. Top-level numbers come straight from jsonb_each; only nested objects go
# through the (much costlier per row) recursive CTE.
_RECOMPUTE = """
WITH RECURSIVE picked AS (
    SELECT * FROM unnest(%(vids)s::text[], %(buckets)s::timestamptz[]) AS b(vehicle_id, bucket)
),
-- Consecutive minutes of one vehicle become one range: one index scan each.
ranges AS (
    SELECT vehicle_id, min(bucket) AS lo, max(bucket) + INTERVAL '1 minute' AS hi
    FROM (SELECT vehicle_id, bucket,
                 bucket - INTERVAL '1 minute' * row_number() OVER (PARTITION BY vehicle_id ORDER BY bucket) AS island
          FROM picked) p
    GROUP BY vehicle_id, island
),
src AS MATERIALIZED (
    SELECT r.vehicle_id, date_bin('1 minute', h.ts, TIMESTAMPTZ 'epoch') AS bucket, h.ts, h.id, h.data
    FROM ranges r
    CROSS JOIN LATERAL (
        -- OFFSET 0 keeps this a per-range index scan instead of a join over the whole table.
        SELECT ts, id, data FROM history WHERE vehicle_id = r.vehicle_id AND ts >= r.lo AND ts < r.hi OFFSET 0
    ) h
),
-- Nested objects only: most telemetry is flat, so the recursion sees few rows.
nested (vehicle_id, bucket, ts, id, k, value) AS (
    SELECT s.vehicle_id, s.bucket, s.ts, s.id, e.key, e.value
    FROM src s, jsonb_each(s.data) e WHERE jsonb_typeof(e.value) = 'object'
    UNION ALL
    -- The type test sits on the work table, so jsonb_each only ever sees objects.
    SELECT n.vehicle_id, n.bucket, n.ts, n.id, n.k || %(sep)s || e.key, e.value
    FROM nested n, jsonb_each(CASE WHEN jsonb_typeof(n.value) = 'object' THEN n.value ELSE '{}'::jsonb END) e
    WHERE jsonb_typeof(n.value) = 'object'
),
numbers AS (
    SELECT s.vehicle_id, s.bucket, s.ts, s.id, e.key AS k, e.value::numeric AS v
    FROM src s, jsonb_each(s.data) e WHERE jsonb_typeof(e.value) = 'number'
    UNION ALL
    SELECT vehicle_id, bucket, ts, id, k, value::numeric FROM nested WHERE jsonb_typeof(value) = 'number'
),
fields AS (
    SELECT vehicle_id, bucket, k, count(*) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi,
           max(ARRAY[extract(epoch FROM ts), id::numeric, v]) AS last
    FROM numbers
    GROUP BY vehicle_id, bucket, k
),
stats AS (
    SELECT vehicle_id, bucket,
           jsonb_object_agg(k, jsonb_build_object(
               'n', n, 's', s, 'lo', lo, 'hi', hi, 'lt', last[1], 'li', last[2], 'lv', last[3])) AS stats
    FROM fields GROUP BY vehicle_id, bucket
),
counts AS (
    SELECT vehicle_id, bucket, count(*) AS rows FROM src GROUP BY vehicle_id, bucket
),
upserted AS (
    INSERT INTO history_1m (vehicle_id, bucket, rows, stats)
    SELECT c.vehicle_id, c.bucket, c.rows, COALESCE(s.stats, '{}'::jsonb)
    FROM counts c LEFT JOIN stats s USING (vehicle_id, bucket)
    ON CONFLICT (vehicle_id, bucket) DO UPDATE SET rows = excluded.rows, stats = excluded.stats
    RETURNING 1
)
DELETE FROM history_1m r USING picked p
WHERE r.vehicle_id = p.vehicle_id AND r.bucket = p.bucket
  AND NOT EXISTS (SELECT 1 FROM counts c WHERE c.vehicle_id = p.vehicle_id AND c.bucket = p.bucket)
"""

# A mark rewritten since it was picked (gen moved on) stays: its minute has rows the
# recompute may not have seen.
_CLEAR = """
DELETE FROM history_1m_dirty d
USING unnest(%(vids)s::text[], %(buckets)s::timestamptz[], %(gens)s::bigint[]) AS p(vehicle_id, bucket, gen)
WHERE d.vehicle_id = p.vehicle_id AND d.bucket = p.bucket AND d.gen = p.gen
"""

_REFRESH_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || ':fleethub:rollup'))"


async def refresh(conn: psycopg.AsyncConnection[Any], settled_before: datetime, limit: int) -> int:
    """Recompute up to `limit` dirty minutes older than `settled_before`; returns how many.

    Minutes still being written stay dirty until they settle (queries read them raw),
    so a busy minute is recomputed about once, not after every batch.
    """
    async with conn.transaction():
        locked = await (await conn.execute(_REFRESH_LOCK)).fetchone()
        if not locked or not locked[0]:
            return 0  # another hub worker is refreshing
        picked = await (await conn.execute(_PICK, (settled_before, limit))).fetchall()
        if not picked:
            return 0
        args = {
            "vids": [p[0] for p in picked],
            "buckets": [p[1] for p in picked],
            "gens": [p[2] for p in picked],
            "sep": PATH_SEP,
        }
        await conn.execute(_RECOMPUTE, args)
        await conn.execute(_CLEAR, args)
        return len(picked)


# -- aggregate queries -----------------------------------------------------------------

_BUCKET_EXPR: dict[Bucket, LiteralString] = {
    Bucket.MINUTE: "minute",
    Bucket.FIVE_MINUTES: "date_bin('5 minutes', minute, TIMESTAMPTZ 'epoch')",
    Bucket.HOUR: "date_bin('1 hour', minute, TIMESTAMPTZ 'epoch')",
    Bucket.DAY: "date_trunc('day', minute, %(tz)s)",
}
_ZERO = Decimal(0)
_INDEX_LIKE = re.compile(r"^-?\d+$")
_FAR_PAST = datetime(1, 1, 2, tzinfo=UTC)
_FAR_FUTURE = datetime(9999, 12, 30, tzinfo=UTC)


def _number_expr(i: int, path: tuple[str, ...]) -> LiteralString:
    """The field as numeric when it is a JSON number reached through objects only.

    `#>` would also index into arrays for segments like "0" or "-1"; the stores' shared
    semantics (and the rollup) never do, so such segments must sit inside objects.
    """
    checks: list[LiteralString] = [f"jsonb_typeof(data #> %(p{i})s) = 'number'"]
    for depth, segment in enumerate(path):
        if depth and _INDEX_LIKE.match(segment):
            checks.append(f"jsonb_typeof(data #> (%(p{i})s::text[])[1:{depth}]) = 'object'")
    return f"CASE WHEN {' AND '.join(checks)} THEN (data #> %(p{i})s)::numeric END AS v{i}"


def aggregate_sql(bucket: Bucket, fields: list[str]) -> LiteralString:
    """One vehicle's buckets over [lo, hi): rollup minutes inside [ilo, ihi) that are
    clean, raw rows for dirty minutes there and for the edges outside it."""
    rollup_cols: list[LiteralString] = []
    raw_cols: list[LiteralString] = []
    raw_values: list[LiteralString] = []
    outer: list[LiteralString] = []
    for i, _ in enumerate(fields):
        st: LiteralString = f"r.stats -> %(k{i})s"
        rollup_cols.append(
            f"({st} -> 'n')::bigint AS n{i}, ({st} -> 's')::numeric AS s{i}, "
            f"({st} -> 'lo')::numeric AS lo{i}, ({st} -> 'hi')::numeric AS hi{i}, "
            f"ARRAY[({st} -> 'lt')::numeric, ({st} -> 'li')::numeric, ({st} -> 'lv')::numeric] AS last{i}"
        )
        raw_cols.append(
            f"count(v{i}), sum(v{i}), min(v{i}), max(v{i}), "
            f"max(ARRAY[extract(epoch FROM ts), id::numeric, v{i}]) FILTER (WHERE v{i} IS NOT NULL)"
        )
        raw_values.append(_number_expr(i, field_path(fields[i])))
        outer.append(f"sum(n{i}), sum(s{i}), min(lo{i}), max(hi{i}), max(last{i}) FILTER (WHERE n{i} > 0)")
    values: LiteralString = "".join(f", {v}" for v in raw_values)
    rollup: LiteralString = "".join(f", {c}" for c in rollup_cols)
    raw: LiteralString = "".join(f", {c}" for c in raw_cols)
    agg: LiteralString = "".join(f", {c}" for c in outer)
    return f"""
WITH dirty AS (
    SELECT bucket FROM history_1m_dirty
    WHERE vehicle_id = %(vid)s AND bucket >= %(ilo)s AND bucket < %(ihi)s
),
-- Runs of consecutive dirty minutes become one range each, plus the partial edges.
windows (lo, hi) AS (
    SELECT min(bucket), max(bucket) + INTERVAL '1 minute'
    FROM (SELECT bucket, bucket - INTERVAL '1 minute' * row_number() OVER (ORDER BY bucket) AS island FROM dirty) d
    GROUP BY island
    UNION ALL
    SELECT * FROM unnest(%(elo)s::timestamptz[], %(ehi)s::timestamptz[])
),
minutes AS (
    SELECT r.bucket AS minute, r.rows{rollup}
    FROM history_1m r
    WHERE r.vehicle_id = %(vid)s AND r.bucket >= %(ilo)s AND r.bucket < %(ihi)s
      AND NOT EXISTS (SELECT 1 FROM dirty d WHERE d.bucket = r.bucket)
    UNION ALL
    SELECT date_bin('1 minute', ts, TIMESTAMPTZ 'epoch'), count(*){raw}
    FROM (
        SELECT h.ts, h.id{values}
        FROM windows w
        CROSS JOIN LATERAL (
            SELECT ts, id, data FROM history WHERE vehicle_id = %(vid)s AND ts >= w.lo AND ts < w.hi OFFSET 0
        ) h
        -- Without the fence each field would be extracted once per aggregate using it.
        OFFSET 0
    ) x
    GROUP BY 1
)
SELECT {_BUCKET_EXPR[bucket]} AS b, sum(rows)::bigint{agg}
FROM minutes GROUP BY 1 ORDER BY 1 LIMIT %(n)s
"""


def aggregate_params(
    vid: str, fields: list[str], lo: float | None, hi: float | None, tz: str, n: int
) -> dict[str, Any]:
    """Split [lo, hi) into whole minutes (the rollup's) and the partial edges (raw)."""
    ilo = None if lo is None else -(-lo // 60) * 60
    ihi = None if hi is None else hi // 60 * 60
    edges: list[tuple[float | None, float | None]] = []
    if ilo is not None and ihi is not None and ilo >= ihi:
        edges.append((lo, hi))
        ilo = ihi = 0.0
    else:
        if lo is not None and ilo is not None and lo < ilo:
            edges.append((lo, ilo))
        if hi is not None and ihi is not None and ihi < hi:
            edges.append((ihi, hi))
    params: dict[str, Any] = {
        "vid": vid,
        "ilo": _dt(ilo, _FAR_PAST),
        "ihi": _dt(ihi, _FAR_FUTURE),
        "elo": [_dt(a, _FAR_PAST) for a, _ in edges],
        "ehi": [_dt(b, _FAR_FUTURE) for _, b in edges],
        "tz": tz,
        "n": n,
    }
    for i, name in enumerate(fields):
        path = field_path(name)
        params[f"p{i}"] = list(path)
        params[f"k{i}"] = PATH_SEP.join(path)
    return params


def _dt(ts: float | None, default: datetime) -> datetime:
    return default if ts is None else datetime.fromtimestamp(ts, UTC)


def aggregate_rows(vid: str, fields: list[str], aggs: tuple[FieldAgg, ...], found: list[Any]) -> list[AggregateRow]:
    """Records of `aggregate_sql` (bucket, rows, then n, sum, min, max, last per field) to rows."""
    column = {name: 2 + 5 * i for i, name in enumerate(fields)}
    plan = [(key, column[name], agg) for key, name, agg in output_plan(aggs)]
    out = []
    for record in found:
        values = {}
        for key, at, agg in plan:
            n, total, lo, hi, last = record[at : at + 5]
            values[key] = finish(agg, int(n or 0), total or _ZERO, lo, hi, last[2] if last else None)
        out.append(AggregateRow(vehicle_id=vid, bucket=record[0].timestamp(), rows=int(record[1]), values=values))
    return out
