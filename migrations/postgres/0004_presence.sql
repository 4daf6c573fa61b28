-- Connection events after debouncing: one row per real online/offline change. Few rows
-- next to history, so a plain table in every mode; retention deletes by time.
CREATE TABLE presence (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    vehicle_id  text NOT NULL,
    ts          timestamptz NOT NULL,
    connected   boolean NOT NULL,
    reason      text
);

CREATE INDEX presence_vehicle_ts ON presence (vehicle_id, ts);
CREATE INDEX presence_ts ON presence (ts);
