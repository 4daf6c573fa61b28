-- The embedded broker's state that survives a restart (broker.stores): persistent MQTT
-- sessions with what they hold, and retained messages. A session's queue counters are kept
-- on its row, in the same transaction as the queue, so limits are checked without a scan.
CREATE TABLE IF NOT EXISTS broker_sessions (
    client_id          TEXT PRIMARY KEY,
    protocol_version   INTEGER NOT NULL,
    expiry_interval_s  INTEGER NOT NULL,
    expires_at         REAL,
    username           TEXT,
    created_at         REAL NOT NULL,
    queued_count       INTEGER NOT NULL DEFAULT 0,
    queued_bytes       INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- The expiry sweep reads only sessions whose client is away.
CREATE INDEX IF NOT EXISTS broker_sessions_expiry ON broker_sessions (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS broker_subscriptions (
    client_id            TEXT NOT NULL REFERENCES broker_sessions (client_id) ON DELETE CASCADE,
    topic_filter         TEXT NOT NULL,
    qos                  INTEGER NOT NULL,
    no_local             INTEGER NOT NULL,
    retain_as_published  INTEGER NOT NULL,
    retain_handling      INTEGER NOT NULL,
    subscription_id      INTEGER,
    PRIMARY KEY (client_id, topic_filter)
) WITHOUT ROWID;

-- QoS 1/2 messages waiting for a session's client, in `seq` order.
CREATE TABLE IF NOT EXISTS broker_queue (
    client_id   TEXT NOT NULL REFERENCES broker_sessions (client_id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    topic       TEXT NOT NULL,
    payload     BLOB NOT NULL,
    qos         INTEGER NOT NULL,
    retain      INTEGER NOT NULL,
    properties  BLOB NOT NULL,
    expires_at  REAL,
    size        INTEGER NOT NULL,
    PRIMARY KEY (client_id, seq)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS broker_queue_expiry ON broker_queue (expires_at) WHERE expires_at IS NOT NULL;

-- Outgoing messages sent and not yet acknowledged, by packet id.
CREATE TABLE IF NOT EXISTS broker_inflight (
    client_id   TEXT NOT NULL REFERENCES broker_sessions (client_id) ON DELETE CASCADE,
    packet_id   INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    state       TEXT NOT NULL,
    topic       TEXT NOT NULL,
    payload     BLOB NOT NULL,
    qos         INTEGER NOT NULL,
    retain      INTEGER NOT NULL,
    properties  BLOB NOT NULL,
    expires_at  REAL,
    PRIMARY KEY (client_id, packet_id)
) WITHOUT ROWID;

-- Incoming QoS 2 packet ids that got PUBREC and wait for PUBREL.
CREATE TABLE IF NOT EXISTS broker_incoming (
    client_id   TEXT NOT NULL REFERENCES broker_sessions (client_id) ON DELETE CASCADE,
    packet_id   INTEGER NOT NULL,
    PRIMARY KEY (client_id, packet_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS broker_retained (
    topic       TEXT PRIMARY KEY,
    payload     BLOB NOT NULL,
    qos         INTEGER NOT NULL,
    retain      INTEGER NOT NULL,
    properties  BLOB NOT NULL,
    expires_at  REAL
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS broker_retained_expiry ON broker_retained (expires_at) WHERE expires_at IS NOT NULL;
