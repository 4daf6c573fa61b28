-- Remote commands and fleet jobs. `doc` is the whole command or job (msgspec JSON); the
-- other columns are what queries filter and order on.
CREATE TABLE IF NOT EXISTS commands (
    id              TEXT PRIMARY KEY,
    vehicle_id      TEXT NOT NULL,
    name            TEXT NOT NULL,
    state           TEXT NOT NULL,
    job_id          TEXT,
    idempotency_key TEXT,
    created_at      REAL NOT NULL,
    doc             TEXT NOT NULL
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS commands_vehicle ON commands (vehicle_id, created_at, id);
CREATE INDEX IF NOT EXISTS commands_created ON commands (created_at, id);
CREATE INDEX IF NOT EXISTS commands_job ON commands (job_id, created_at, id) WHERE job_id IS NOT NULL;
-- What a starting hub loads: only commands still waiting.
CREATE INDEX IF NOT EXISTS commands_open ON commands (created_at, id) WHERE state IN ('queued', 'sent');
-- A repeated request with the same key finds the command it created.
CREATE UNIQUE INDEX IF NOT EXISTS commands_idempotency ON commands (vehicle_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS command_jobs (
    id          TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    created_at  REAL NOT NULL,
    doc         TEXT NOT NULL
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS command_jobs_created ON command_jobs (created_at, id);
