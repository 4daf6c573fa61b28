-- History: one row per accepted telemetry message; ts is device time.
-- Range-partitioned by ts. The hub creates partitions ahead of time and, before a batch
-- that needs one (backfill, clock jumps), on demand; retention drops whole partitions.
-- There is no DEFAULT partition: a row with no partition fails its batch, which the
-- twin service retries after the partition is created, so no row is parked anywhere.
CREATE SEQUENCE history_id_seq AS bigint;

CREATE TABLE history (
    id           bigint NOT NULL DEFAULT nextval('history_id_seq'),
    vehicle_id   text NOT NULL,
    ts           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    seq          bigint,
    data         jsonb NOT NULL
) PARTITION BY RANGE (ts);

ALTER SEQUENCE history_id_seq OWNED BY history.id;

-- Resends after a lost PUBACK carry the same device time and seq: keep one copy. NULL
-- seqs never collide (NULLS DISTINCT), so rows without seq are all kept. The same index
-- serves every per-vehicle time-range read.
CREATE UNIQUE INDEX history_dedupe ON history (vehicle_id, ts, seq);
