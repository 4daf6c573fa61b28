-- Report schedules: a fleet's daily or weekly summary sent to a notification channel.
-- `body` is the schedule as written (msgspec JSON); `last_period` the last period sent.
CREATE TABLE IF NOT EXISTS report_schedules (
    id           text PRIMARY KEY,
    body         text NOT NULL,
    created_at   double precision NOT NULL,
    updated_at   double precision NOT NULL,
    last_period  text
);
