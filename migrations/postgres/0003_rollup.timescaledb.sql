-- 1-minute rollup of every numeric field, maintained by the hub (twin/stores/pg_rollup.py):
-- stats maps a field path (segments joined by U+001F) to
-- {"n": count, "s": sum, "lo": min, "hi": max, "lt": epoch of last, "li": id of last, "lv": last}.
-- A continuous aggregate cannot produce this: telemetry fields are not known columns,
-- and flattening jsonb needs set-returning functions a continuous aggregate refuses.
CREATE TABLE history_1m (
    vehicle_id  text NOT NULL,
    bucket      timestamptz NOT NULL,
    rows        integer NOT NULL,
    stats       jsonb NOT NULL,
    PRIMARY KEY (vehicle_id, bucket)
);

SELECT create_hypertable('history_1m', 'bucket', chunk_time_interval => INTERVAL '7 days', create_default_indexes => false);

-- Minutes whose rollup is missing or stale. Written in the same transaction as the
-- history rows, so a query that reads the rollup for clean minutes and the raw rows for
-- dirty ones is exact at any moment. gen changes on every write to the minute, which
-- lets a refresh clear only the marks it has actually caught up with.
CREATE TABLE history_1m_dirty (
    vehicle_id  text NOT NULL,
    bucket      timestamptz NOT NULL,
    gen         bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (vehicle_id, bucket)
);

-- Per vehicle and minute: how many messages, when, and the last full message. Real-time
-- (materialized_only = false), so the newest minutes are read from history until the
-- refresh policy (set at start) has materialised them. For dashboards and BI tools that
-- want activity or a downsampled track without touching raw history.
CREATE MATERIALIZED VIEW history_activity_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT vehicle_id,
       time_bucket(INTERVAL '1 minute', ts) AS bucket,
       count(*) AS rows,
       min(ts) AS first_ts,
       max(ts) AS last_ts,
       last(data, ts) AS last_data
FROM history
GROUP BY vehicle_id, time_bucket(INTERVAL '1 minute', ts)
WITH NO DATA;
