-- Notification channels (`body` is the channel as written, msgspec JSON), the outbox of
-- notifications waiting for a delivery, and the deliveries (single or digest) with their retries.
CREATE TABLE IF NOT EXISTS notification_channels (
    id          TEXT PRIMARY KEY,
    body        TEXT NOT NULL,
    owner       TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS notifications (
    id           TEXT PRIMARY KEY,
    channel_id   TEXT NOT NULL,
    key          TEXT NOT NULL,
    kind         TEXT NOT NULL,
    severity     TEXT NOT NULL,
    created_at   REAL NOT NULL,
    payload      TEXT NOT NULL,
    delivery_id  TEXT
) WITHOUT ROWID;

-- The same alert event or report is queued once per channel, however often it is offered.
CREATE UNIQUE INDEX IF NOT EXISTS notifications_key ON notifications (channel_id, key);
CREATE INDEX IF NOT EXISTS notifications_pending ON notifications (created_at, id) WHERE delivery_id IS NULL;
CREATE INDEX IF NOT EXISTS notifications_delivery ON notifications (delivery_id) WHERE delivery_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS notification_deliveries (
    id            TEXT PRIMARY KEY,
    channel_id    TEXT NOT NULL,
    state         TEXT NOT NULL,
    items         INTEGER NOT NULL,
    created_at    REAL NOT NULL,
    next_at       REAL NOT NULL,
    attempts      INTEGER NOT NULL,
    last_error    TEXT,
    delivered_at  REAL,
    updated_at    REAL NOT NULL
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS notification_deliveries_due ON notification_deliveries (next_at, id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS notification_deliveries_created ON notification_deliveries (created_at, id);
