-- Security: vehicle credentials, users, API tokens and the audit log (security/).
CREATE TABLE IF NOT EXISTS vehicle_credentials (
    vehicle_id  TEXT PRIMARY KEY,
    fleet       TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at  REAL NOT NULL,
    rotated_at  REAL,
    revoked_at  REAL
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS vehicle_credentials_fleet ON vehicle_credentials (fleet, vehicle_id);

CREATE TABLE IF NOT EXISTS users (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL,
    fleets        TEXT NOT NULL,
    password_hash TEXT,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS api_tokens (
    id          TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    label       TEXT NOT NULL DEFAULT '',
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL,
    revoked_at  REAL
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS api_tokens_user ON api_tokens (user_name);

CREATE TABLE IF NOT EXISTS audit_log (
    id          TEXT PRIMARY KEY,
    ts          REAL NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    remote      TEXT NOT NULL,
    vehicle_id  TEXT,
    fleet       TEXT,
    target      TEXT,
    detail      TEXT NOT NULL
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log (ts, id);
CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log (actor, ts);
CREATE INDEX IF NOT EXISTS audit_log_vehicle ON audit_log (vehicle_id, ts);
