-- Worker mode (cluster/requests.py): operator writes of a twin asked for on a node that does
-- not own the vehicle. The asking node stores the write here; the owner claims it, applies it
-- through its own twin service and stores the outcome in the same transaction as the twin
-- change; the asking node answers its HTTP call from `status` and `outcome`.
-- `state`: waiting -> claimed -> done, or withdrawn by the asking node once it gave up.
-- The function that stores an outcome only while the claim holds is installed by the workers
-- (cluster/requests.py): its body is procedural.
CREATE TABLE IF NOT EXISTS cluster_requests (
    id          text PRIMARY KEY,
    part        integer NOT NULL,
    vehicle_id  text NOT NULL,
    write       text NOT NULL,
    audit       text,
    requester   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    deadline    timestamptz NOT NULL,
    state       text NOT NULL DEFAULT 'waiting',
    claimed_by  text,
    claim_token bigint,
    status      integer,
    outcome     text
);

CREATE INDEX IF NOT EXISTS cluster_requests_open ON cluster_requests (part, created_at) WHERE state IN ('waiting', 'claimed');
