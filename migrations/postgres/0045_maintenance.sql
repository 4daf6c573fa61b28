-- Maintenance schedules (`body` is the schedule as written, msgspec JSON), the interval each
-- vehicle is in per schedule, service records and meter corrections.
CREATE TABLE IF NOT EXISTS maintenance_schedules (
    id          text PRIMARY KEY,
    body        text NOT NULL,
    created_at  double precision NOT NULL,
    updated_at  double precision NOT NULL
);

CREATE TABLE IF NOT EXISTS maintenance_intervals (
    schedule_id        text NOT NULL,
    vehicle_id         text NOT NULL,
    fleet              text NOT NULL,
    started_at         double precision NOT NULL,
    start_odometer_km  double precision,
    start_engine_hours double precision,
    stage              text NOT NULL,
    service_id         text,
    PRIMARY KEY (schedule_id, vehicle_id)
);

CREATE TABLE IF NOT EXISTS maintenance_services (
    id            text PRIMARY KEY,
    vehicle_id    text NOT NULL,
    fleet         text NOT NULL,
    schedule_id   text NOT NULL,
    done_at       double precision NOT NULL,
    recorded_at   double precision NOT NULL,
    by_user       text NOT NULL,
    odometer_km   double precision,
    engine_hours  double precision,
    note          text
);

CREATE INDEX IF NOT EXISTS maintenance_services_done ON maintenance_services (done_at, id);
CREATE INDEX IF NOT EXISTS maintenance_services_vehicle ON maintenance_services (vehicle_id, done_at, id);

CREATE TABLE IF NOT EXISTS meter_corrections (
    id                     text PRIMARY KEY,
    vehicle_id             text NOT NULL,
    fleet                  text NOT NULL,
    at                     double precision NOT NULL,
    by_user                text NOT NULL,
    odometer_km            double precision,
    engine_hours           double precision,
    previous_odometer_km   double precision,
    previous_engine_hours  double precision,
    note                   text
);

CREATE INDEX IF NOT EXISTS meter_corrections_vehicle ON meter_corrections (vehicle_id, at, id);
