-- Worker mode (cluster/): the workers sharing this database, one lease per partition with
-- its fencing token, and the inbox of messages a worker received for a partition another
-- worker owns. The fence triggers are installed by the workers themselves (cluster/schema.py):
-- their bodies are procedural, and a database no worker ever used needs none.
CREATE TABLE IF NOT EXISTS cluster_workers (
    worker      text PRIMARY KEY,
    role        text NOT NULL,
    started_at  timestamptz NOT NULL,
    seen_at     timestamptz NOT NULL
);

-- `token` grows by one each time the partition changes hands: a write carrying an older
-- token is refused by the fence, so a worker that lost its lease writes nothing.
CREATE TABLE IF NOT EXISTS cluster_leases (
    part        integer PRIMARY KEY,
    owner       text,
    token       bigint NOT NULL DEFAULT 0,
    expires_at  timestamptz NOT NULL DEFAULT '-infinity'
);

CREATE TABLE IF NOT EXISTS cluster_inbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    part        integer NOT NULL,
    vehicle_id  text NOT NULL,
    kind        text NOT NULL,
    subtopic    text NOT NULL,
    payload     bytea NOT NULL,
    received_at double precision NOT NULL,
    extra       text NOT NULL
);

CREATE INDEX IF NOT EXISTS cluster_inbox_part ON cluster_inbox (part, id);
