-- History: one row per accepted telemetry message; ts is device time.
-- A hypertable. Chunk width, compression and retention policies follow the settings
-- and are applied at every start (twin/stores/pg_policies.py), not fixed here.
CREATE SEQUENCE history_id_seq AS bigint;

CREATE TABLE history (
    id           bigint NOT NULL DEFAULT nextval('history_id_seq'),
    vehicle_id   text NOT NULL,
    ts           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    seq          bigint,
    data         jsonb NOT NULL
);

ALTER SEQUENCE history_id_seq OWNED BY history.id;

SELECT create_hypertable('history', 'ts', chunk_time_interval => INTERVAL '1 day', create_default_indexes => false);

-- Resends after a lost PUBACK carry the same device time and seq: keep one copy. NULL
-- seqs never collide (NULLS DISTINCT), so rows without seq are all kept. The same index
-- serves every per-vehicle time-range read.
CREATE UNIQUE INDEX history_dedupe ON history (vehicle_id, ts, seq);

-- Segment by vehicle and order as per-vehicle reads do, so a compressed chunk answers
-- "one vehicle, a time range" without decompressing the others. Every column of the
-- unique index is in segmentby or orderby, which ON CONFLICT into compressed chunks
-- needs (TimescaleDB 2.11 or later).
ALTER TABLE history SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'vehicle_id',
    timescaledb.compress_orderby = 'ts, seq, id'
);
