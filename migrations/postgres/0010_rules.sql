-- Rules engine: definitions, zones, alerts and pending `for` windows (as migrations/sqlite/0010).
-- Definitions, zones and alert documents are `json`, not `jsonb`: they are read whole and
-- never searched inside, and `json` gives back the exact text (key order included) that
-- the engine wrote, so the API answers the same on both backends.
CREATE TABLE rules (
    name        text PRIMARY KEY,
    definition  json NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE zones (
    name        text PRIMARY KEY,
    zone        json NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per alert; `doc` is the whole alert, the other columns are what queries filter on.
CREATE TABLE alerts (
    id          text PRIMARY KEY,
    rule        text NOT NULL,
    vehicle_id  text NOT NULL,
    severity    text NOT NULL,
    state       text NOT NULL,
    raised_at   timestamptz NOT NULL,
    cleared_at  timestamptz,
    doc         json NOT NULL
);

-- At most one open alert per rule and vehicle.
CREATE UNIQUE INDEX alerts_open ON alerts (rule, vehicle_id) WHERE state <> 'cleared';
CREATE INDEX alerts_raised ON alerts (raised_at);
CREATE INDEX alerts_vehicle ON alerts (vehicle_id, raised_at);
CREATE INDEX alerts_rule ON alerts (rule, raised_at);
CREATE INDEX alerts_cleared ON alerts (cleared_at) WHERE cleared_at IS NOT NULL;

-- `for` and `clear_for` windows that have started and not ended: rebuilt into timers at
-- start-up. Times are the engine's epoch seconds, kept exact (float8) because they are
-- deadlines the engine compares, not values anyone filters on.
CREATE TABLE rule_timers (
    rule        text NOT NULL,
    vehicle_id  text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('raise', 'clear')),
    since       float8 NOT NULL,
    due         float8 NOT NULL,
    vals        json NOT NULL,
    PRIMARY KEY (rule, vehicle_id)
);
