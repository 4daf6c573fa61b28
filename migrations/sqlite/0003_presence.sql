-- Connection events after debouncing: one row per real online/offline change.
-- Retention deletes them with history.
CREATE TABLE presence (
    id          INTEGER PRIMARY KEY,
    vehicle_id  TEXT NOT NULL,
    ts          REAL NOT NULL,
    connected   INTEGER NOT NULL,
    reason      TEXT
);

CREATE INDEX presence_vehicle_ts ON presence (vehicle_id, ts);
CREATE INDEX presence_ts ON presence (ts);
