-- Items the database refused (a value it cannot store), kept with their reason instead of retried.
CREATE TABLE dead_letters (
    id text PRIMARY KEY,
    vehicle_id text NOT NULL,
    fleet text,
    kind text NOT NULL,
    topic text NOT NULL,
    payload bytea NOT NULL,
    reason text NOT NULL,
    detail text NOT NULL,
    received_at double precision NOT NULL,
    quarantined_at double precision NOT NULL
);
CREATE INDEX dead_letters_newest ON dead_letters (quarantined_at DESC, id DESC);
