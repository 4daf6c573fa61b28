-- Remote commands and fleet jobs. `doc` is the whole command or job (msgspec JSON); the
-- other columns are what queries filter and order on.
CREATE TABLE IF NOT EXISTS commands (
    id              text PRIMARY KEY,
    vehicle_id      text NOT NULL,
    name            text NOT NULL,
    state           text NOT NULL,
    job_id          text,
    idempotency_key text,
    created_at      double precision NOT NULL,
    doc             text NOT NULL
);

CREATE INDEX IF NOT EXISTS commands_vehicle ON commands (vehicle_id, created_at, id);
CREATE INDEX IF NOT EXISTS commands_created ON commands (created_at, id);
CREATE INDEX IF NOT EXISTS commands_job ON commands (job_id, created_at, id) WHERE job_id IS NOT NULL;
-- What a starting hub loads: only commands still waiting.
CREATE INDEX IF NOT EXISTS commands_open ON commands (created_at, id) WHERE state IN ('queued', 'sent');
-- A repeated request with the same key finds the command it created.
CREATE UNIQUE INDEX IF NOT EXISTS commands_idempotency ON commands (vehicle_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS command_jobs (
    id          text PRIMARY KEY,
    state       text NOT NULL,
    created_at  double precision NOT NULL,
    doc         text NOT NULL
);

CREATE INDEX IF NOT EXISTS command_jobs_created ON command_jobs (created_at, id);
