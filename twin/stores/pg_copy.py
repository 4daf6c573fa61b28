"""The write path of the PostgreSQL store: staging tables and the COPY payloads that fill them.

Rows are formatted here as COPY text in one pass, which costs far less per row than
psycopg's generic `write_row`; times travel as epoch seconds and become timestamptz
in SQL.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec

from kernel import copy_text
from twin.model import HistoryRow, TwinState

_encode = msgspec.json.Encoder().encode

# jsonb cannot hold U+0000, which JSON strings may; an escaped NUL (not an escaped
# backslash followed by "u0000") becomes U+FFFD rather than failing the batch forever.
_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")

# Created once on each pooled connection the store writes through (temporary tables are per session).
STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS fh_history_stage (
    ord integer, vehicle_id text, ts float8, received_at float8, seq bigint, data jsonb
) ON COMMIT DELETE ROWS;
CREATE TEMPORARY TABLE IF NOT EXISTS fh_twin_stage (
    ord integer, vehicle_id text, fleet text, version bigint, connected boolean, last_seen float8,
    created_at float8, updated_at float8, tags jsonb, state jsonb
) ON COMMIT DELETE ROWS;
"""

COPY_HISTORY = "COPY fh_history_stage (ord, vehicle_id, ts, received_at, seq, data) FROM STDIN"
MOVE_HISTORY = """
INSERT INTO history (vehicle_id, ts, received_at, seq, data)
SELECT vehicle_id, to_timestamp(ts), to_timestamp(received_at), seq, data FROM fh_history_stage ORDER BY ord
ON CONFLICT DO NOTHING
"""
COPY_TWINS = (
    "COPY fh_twin_stage (ord, vehicle_id, fleet, version, connected, last_seen, created_at, updated_at, tags, state) "
    "FROM STDIN"
)
# DISTINCT ON keeps the last copy of a twin written twice in one batch; the ORDER BY
# vehicle_id takes row locks in one order, so two hub workers cannot deadlock.
MOVE_TWINS = """
INSERT INTO twins (vehicle_id, fleet, version, connected, last_seen, created_at, updated_at, tags, state)
SELECT vehicle_id, fleet, version, connected, to_timestamp(last_seen), to_timestamp(created_at),
       to_timestamp(updated_at), tags, state
FROM (SELECT DISTINCT ON (vehicle_id) * FROM fh_twin_stage ORDER BY vehicle_id, ord DESC) t
ORDER BY vehicle_id
ON CONFLICT (vehicle_id) DO UPDATE SET
    fleet = excluded.fleet, version = excluded.version, connected = excluded.connected,
    last_seen = excluded.last_seen, updated_at = excluded.updated_at, tags = excluded.tags, state = excluded.state
"""


def json_text(value: object) -> str:
    text = _encode(value).decode()
    return _NUL.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


_NULL = "\\N"


def history_copy(history: Sequence[HistoryRow]) -> bytes:
    lines = [
        f"{i}\t{copy_text(h.vehicle_id)}\t{h.ts!r}\t{h.received_at!r}\t"
        f"{_NULL if h.seq is None else h.seq}\t{copy_text(json_text(h.data))}\n"
        for i, h in enumerate(history)
    ]
    return "".join(lines).encode()


def twins_copy(twins: Sequence[TwinState]) -> bytes:
    lines = []
    for i, t in enumerate(twins):
        seen = t.connection.last_seen
        lines.append(
            f"{i}\t{copy_text(t.vehicle_id)}\t{copy_text(t.fleet)}\t{t.version}\t"
            f"{'t' if t.connection.connected else 'f'}\t{_NULL if seen is None else repr(seen)}\t"
            f"{t.created_at!r}\t{t.updated_at!r}\t{copy_text(json_text(t.tags))}\t{copy_text(json_text(t))}\n"
        )
    return "".join(lines).encode()
