-- Rules engine: definitions, zones, alerts and pending `for` windows.
CREATE TABLE IF NOT EXISTS rules (
    name        TEXT PRIMARY KEY,
    definition  TEXT NOT NULL,
    updated_at  REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS zones (
    name        TEXT PRIMARY KEY,
    zone        TEXT NOT NULL,
    updated_at  REAL NOT NULL
) WITHOUT ROWID;

-- One row per alert; `doc` is the whole alert, the other columns are what queries filter on.
CREATE TABLE IF NOT EXISTS alerts (
    id          TEXT PRIMARY KEY,
    rule        TEXT NOT NULL,
    vehicle_id  TEXT NOT NULL,
    severity    TEXT NOT NULL,
    state       TEXT NOT NULL,
    raised_at   REAL NOT NULL,
    cleared_at  REAL,
    doc         TEXT NOT NULL
) WITHOUT ROWID;

-- At most one open alert per rule and vehicle.
CREATE UNIQUE INDEX IF NOT EXISTS alerts_open ON alerts (rule, vehicle_id) WHERE state != 'cleared';
CREATE INDEX IF NOT EXISTS alerts_raised ON alerts (raised_at);
CREATE INDEX IF NOT EXISTS alerts_vehicle ON alerts (vehicle_id, raised_at);
CREATE INDEX IF NOT EXISTS alerts_rule ON alerts (rule, raised_at);
CREATE INDEX IF NOT EXISTS alerts_cleared ON alerts (cleared_at) WHERE cleared_at IS NOT NULL;

-- `for` and `clear_for` windows that have started and not ended: rebuilt into timers at start-up.
CREATE TABLE IF NOT EXISTS rule_timers (
    rule        TEXT NOT NULL,
    vehicle_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    since       REAL NOT NULL,
    due         REAL NOT NULL,
    vals        TEXT NOT NULL,
    PRIMARY KEY (rule, vehicle_id)
) WITHOUT ROWID;
