-- Items the database refused (a value it cannot store), kept with their reason instead of retried.
CREATE TABLE dead_letters (
    id TEXT PRIMARY KEY,
    vehicle_id TEXT NOT NULL,
    fleet TEXT,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    received_at REAL NOT NULL,
    quarantined_at REAL NOT NULL
);
CREATE INDEX dead_letters_newest ON dead_letters (quarantined_at DESC, id DESC);
