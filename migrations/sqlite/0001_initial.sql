-- Twins: the whole state as JSON, plus the columns the API filters and sorts on.
CREATE TABLE twins (
    vehicle_id  TEXT PRIMARY KEY,
    fleet       TEXT NOT NULL DEFAULT 'default',
    version     INTEGER NOT NULL,
    connected   INTEGER NOT NULL DEFAULT 0,
    last_seen   REAL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    state       TEXT NOT NULL
) WITHOUT ROWID;

CREATE INDEX twins_fleet ON twins (fleet, vehicle_id);
CREATE INDEX twins_connected ON twins (connected, vehicle_id);

-- History: one row per accepted telemetry message; `ts` is device time, epoch seconds.
CREATE TABLE history (
    id           INTEGER PRIMARY KEY,
    vehicle_id   TEXT NOT NULL,
    ts           REAL NOT NULL,
    received_at  REAL NOT NULL,
    seq          INTEGER,
    data         TEXT NOT NULL
);

CREATE INDEX history_vehicle_ts ON history (vehicle_id, ts);
-- Resends after a lost PUBACK carry the same device time and seq: keep one copy.
CREATE UNIQUE INDEX history_dedupe ON history (vehicle_id, ts, seq) WHERE seq IS NOT NULL;
