-- Twins: the whole state as jsonb, plus the columns the API filters and sorts on.
CREATE TABLE twins (
    vehicle_id  text PRIMARY KEY,
    fleet       text NOT NULL DEFAULT 'default',
    version     bigint NOT NULL,
    connected   boolean NOT NULL DEFAULT false,
    last_seen   timestamptz,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    state       jsonb NOT NULL
);

CREATE INDEX twins_fleet ON twins (fleet, vehicle_id);
CREATE INDEX twins_connected ON twins (connected, vehicle_id);
-- Fleet reports pick vehicles by tag: state -> 'tags' @> '{"depot": "north"}'.
CREATE INDEX twins_tags ON twins USING gin ((state -> 'tags') jsonb_path_ops);
