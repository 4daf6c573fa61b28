-- Notification channels (`body` is the channel as written, msgspec JSON), the outbox of
-- notifications waiting for a delivery, and the deliveries (single or digest) with their retries.
CREATE TABLE IF NOT EXISTS notification_channels (
    id          text PRIMARY KEY,
    body        text NOT NULL,
    owner       text,
    created_at  double precision NOT NULL,
    updated_at  double precision NOT NULL
);

CREATE TABLE IF NOT EXISTS notifications (
    id           text PRIMARY KEY,
    channel_id   text NOT NULL,
    key          text NOT NULL,
    kind         text NOT NULL,
    severity     text NOT NULL,
    created_at   double precision NOT NULL,
    payload      jsonb NOT NULL,
    delivery_id  text
);

-- The same alert event or report is queued once per channel, however often it is offered.
CREATE UNIQUE INDEX IF NOT EXISTS notifications_key ON notifications (channel_id, key);
CREATE INDEX IF NOT EXISTS notifications_pending ON notifications (created_at, id) WHERE delivery_id IS NULL;
CREATE INDEX IF NOT EXISTS notifications_delivery ON notifications (delivery_id) WHERE delivery_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS notification_deliveries (
    id            text PRIMARY KEY,
    channel_id    text NOT NULL,
    state         text NOT NULL,
    items         integer NOT NULL,
    created_at    double precision NOT NULL,
    next_at       double precision NOT NULL,
    attempts      integer NOT NULL,
    last_error    text,
    delivered_at  double precision,
    updated_at    double precision NOT NULL
);

CREATE INDEX IF NOT EXISTS notification_deliveries_due ON notification_deliveries (next_at, id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS notification_deliveries_created ON notification_deliveries (created_at, id);
