-- Security: vehicle credentials, users, API tokens and the audit log (security/).
CREATE TABLE IF NOT EXISTS vehicle_credentials (
    vehicle_id  text PRIMARY KEY,
    fleet       text NOT NULL,
    secret_hash text NOT NULL,
    created_at  double precision NOT NULL,
    rotated_at  double precision,
    revoked_at  double precision
);

CREATE INDEX IF NOT EXISTS vehicle_credentials_fleet ON vehicle_credentials (fleet, vehicle_id);

CREATE TABLE IF NOT EXISTS users (
    name          text PRIMARY KEY,
    role          text NOT NULL,
    fleets        jsonb NOT NULL,
    password_hash text,
    disabled      boolean NOT NULL DEFAULT false,
    created_at    double precision NOT NULL
);

CREATE TABLE IF NOT EXISTS api_tokens (
    id          text PRIMARY KEY,
    user_name   text NOT NULL,
    token_hash  text NOT NULL UNIQUE,
    label       text NOT NULL DEFAULT '',
    created_at  double precision NOT NULL,
    expires_at  double precision NOT NULL,
    revoked_at  double precision
);

CREATE INDEX IF NOT EXISTS api_tokens_user ON api_tokens (user_name);

CREATE TABLE IF NOT EXISTS audit_log (
    id          text PRIMARY KEY,
    ts          double precision NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    remote      text NOT NULL,
    vehicle_id  text,
    fleet       text,
    target      text,
    detail      jsonb NOT NULL
);

CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log (ts, id);
CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log (actor, ts);
CREATE INDEX IF NOT EXISTS audit_log_vehicle ON audit_log (vehicle_id, ts);
