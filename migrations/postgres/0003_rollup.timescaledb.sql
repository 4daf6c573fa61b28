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
