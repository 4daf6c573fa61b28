-- Worker mode: alert and command events too large for a NOTIFY payload (8000 bytes), kept
-- for a few minutes so the other nodes' consoles can read them (cluster/announce.py).
CREATE TABLE IF NOT EXISTS cluster_live_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS cluster_live_events_created ON cluster_live_events (created_at);
