-- Report schedules: a fleet's daily or weekly summary sent to a notification channel.
-- `body` is the schedule as written (msgspec JSON); `last_period` the last period sent.
CREATE TABLE IF NOT EXISTS report_schedules (
    id           TEXT PRIMARY KEY,
    body         TEXT NOT NULL,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    last_period  TEXT
) WITHOUT ROWID;
