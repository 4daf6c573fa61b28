-- Twins: the whole state as jsonb, plus the columns the API filters and sorts on.
-- Every batch rewrites the twins it touched. Tags get a column of their own (not an
-- index on state) and pages keep free room, so those rewrites are HOT updates that
-- leave the indexes alone unless fleet, connection or tags really changed.
CREATE TABLE twins (
    vehicle_id  text PRIMARY KEY,
    fleet       text NOT NULL DEFAULT 'default',
    version     bigint NOT NULL,
    connected   boolean NOT NULL DEFAULT false,
    last_seen   timestamptz,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    tags        jsonb NOT NULL DEFAULT '{}',
    state       jsonb NOT NULL
) WITH (fillfactor = 70);

CREATE INDEX twins_fleet ON twins (fleet, vehicle_id);
CREATE INDEX twins_connected ON twins (connected, vehicle_id);
-- Fleet reports pick vehicles by tag: tags @> '{"depot": "north"}'.
CREATE INDEX twins_tags ON twins USING gin (tags jsonb_path_ops);
