-- The embedded broker's state that survives a restart (broker.stores): persistent MQTT
-- sessions with what they hold, and retained messages. A session's queue counters are kept
-- on its row, in the same transaction as the queue, so limits are checked without a scan.
CREATE TABLE IF NOT EXISTS broker_sessions (
    client_id          text PRIMARY KEY,
    protocol_version   integer NOT NULL,
    expiry_interval_s  bigint NOT NULL,
    expires_at         double precision,
    username           text,
    created_at         double precision NOT NULL,
    queued_count       bigint NOT NULL DEFAULT 0,
    queued_bytes       bigint NOT NULL DEFAULT 0
);

-- The expiry sweep reads only sessions whose client is away.
CREATE INDEX IF NOT EXISTS broker_sessions_expiry ON broker_sessions (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS broker_subscriptions (
    client_id            text NOT NULL REFERENCES broker_sessions (client_id) ON DELETE CASCADE,
    topic_filter         text NOT NULL,
    qos                  integer NOT NULL,
    no_local             boolean NOT NULL,
    retain_as_published  boolean NOT NULL,
    retain_handling      integer NOT NULL,
    subscription_id      bigint,
    PRIMARY KEY (client_id, topic_filter)
);

-- QoS 1/2 messages waiting for a session's client, in `seq` order.
CREATE TABLE IF NOT EXISTS broker_queue (
    client_id   text NOT NULL REFERENCES broker_sessions (client_id) ON DELETE CASCADE,
    seq         bigint NOT NULL,
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    qos         integer NOT NULL,
    retain      boolean NOT NULL,
    properties  bytea NOT NULL,
    expires_at  double precision,
    size        bigint NOT NULL,
    PRIMARY KEY (client_id, seq)
);

CREATE INDEX IF NOT EXISTS broker_queue_expiry ON broker_queue (expires_at) WHERE expires_at IS NOT NULL;

-- Outgoing messages sent and not yet acknowledged, by packet id.
CREATE TABLE IF NOT EXISTS broker_inflight (
    client_id   text NOT NULL REFERENCES broker_sessions (client_id) ON DELETE CASCADE,
    packet_id   integer NOT NULL,
    seq         bigint NOT NULL,
    state       text NOT NULL,
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    qos         integer NOT NULL,
    retain      boolean NOT NULL,
    properties  bytea NOT NULL,
    expires_at  double precision,
    PRIMARY KEY (client_id, packet_id)
);

-- Incoming QoS 2 packet ids that got PUBREC and wait for PUBREL.
CREATE TABLE IF NOT EXISTS broker_incoming (
    client_id   text NOT NULL REFERENCES broker_sessions (client_id) ON DELETE CASCADE,
    packet_id   integer NOT NULL,
    PRIMARY KEY (client_id, packet_id)
);

CREATE TABLE IF NOT EXISTS broker_retained (
    topic       text PRIMARY KEY,
    payload     bytea NOT NULL,
    qos         integer NOT NULL,
    retain      boolean NOT NULL,
    properties  bytea NOT NULL,
    expires_at  double precision
);

CREATE INDEX IF NOT EXISTS broker_retained_expiry ON broker_retained (expires_at) WHERE expires_at IS NOT NULL;
