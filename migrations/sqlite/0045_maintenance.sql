-- Maintenance schedules (`body` is the schedule as written, msgspec JSON), the interval each
-- vehicle is in per schedule, service records and meter corrections.
CREATE TABLE IF NOT EXISTS maintenance_schedules (
    id          TEXT PRIMARY KEY,
    body        TEXT NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS maintenance_intervals (
    schedule_id        TEXT NOT NULL,
    vehicle_id         TEXT NOT NULL,
    fleet              TEXT NOT NULL,
    started_at         REAL NOT NULL,
    start_odometer_km  REAL,
    start_engine_hours REAL,
    stage              TEXT NOT NULL,
    service_id         TEXT,
    PRIMARY KEY (schedule_id, vehicle_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS maintenance_services (
    id            TEXT PRIMARY KEY,
    vehicle_id    TEXT NOT NULL,
    fleet         TEXT NOT NULL,
    schedule_id   TEXT NOT NULL,
    done_at       REAL NOT NULL,
    recorded_at   REAL NOT NULL,
    by_user       TEXT NOT NULL,
    odometer_km   REAL,
    engine_hours  REAL,
    note          TEXT
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS maintenance_services_done ON maintenance_services (done_at, id);
CREATE INDEX IF NOT EXISTS maintenance_services_vehicle ON maintenance_services (vehicle_id, done_at, id);

CREATE TABLE IF NOT EXISTS meter_corrections (
    id                     TEXT PRIMARY KEY,
    vehicle_id             TEXT NOT NULL,
    fleet                  TEXT NOT NULL,
    at                     REAL NOT NULL,
    by_user                TEXT NOT NULL,
    odometer_km            REAL,
    engine_hours           REAL,
    previous_odometer_km   REAL,
    previous_engine_hours  REAL,
    note                   TEXT
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS meter_corrections_vehicle ON meter_corrections (vehicle_id, at, id);
