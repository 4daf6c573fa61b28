"""CSV exports of history, streamed with backpressure.

An export never holds more than one read of the store (`http.export_rows_per_read`
rows) and one chunk of text (about `http.export_chunk_bytes`): rows are read a page at
a time and written out in small chunks, and the next chunk is made only once the HTTP
server has taken the previous one, which it does only while the client keeps reading
(uvicorn waits for its write buffer to drain before accepting more). A client that
stops reading therefore stalls its own export at that bound instead of making the hub
buffer the rest; the store is not touched again until it reads on.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import msgspec
from litestar.response import Stream

from api.times import rfc3339
from twin import AggregateQuery, HistoryReader, PointQuery, time_zone


def bucket_time(ts: float, tz: str) -> str:
    text = datetime.fromtimestamp(ts, time_zone(tz)).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z") if tz == "UTC" else text


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


class _Chunks:
    """CSV lines gathered into chunks of about `size` characters."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._out = io.StringIO()
        self._writer = csv.writer(self._out, lineterminator="\r\n")

    def add(self, line: list[str]) -> str | None:
        """Add a line; returns a full chunk to send when there is one."""
        self._writer.writerow(line)
        return self.take() if self._out.tell() >= self._size else None

    def take(self) -> str:
        text = self._out.getvalue()
        self._out.seek(0)
        self._out.truncate()
        return text


def csv_response(body: AsyncIterator[str], filename: str) -> Stream:
    return Stream(
        body,
        # Litestar appends "; charset=utf-8" to text/* types.
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def _paged_csv(
    header: list[str],
    read: Callable[[str | None, int], Any],
    lines_of: Callable[[Any], list[list[str]]],
    cap: int | None,
    rows_per_read: int,
    chunk_bytes: int,
) -> AsyncIterator[str]:
    """The header, then every row `read(cursor, limit)` pages out (at most `cap`), in chunks."""
    chunks = _Chunks(chunk_bytes)
    chunks.add(header)
    sent, cursor = 0, None
    while cap is None or sent < cap:
        size = rows_per_read if cap is None else min(rows_per_read, cap - sent)
        page = await read(cursor, size)
        sent += len(page.rows)
        for line in lines_of(page):
            chunk = chunks.add(line)
            if chunk is not None:
                yield chunk
        # Drop the page before waiting on the client: only the unsent chunk stays referenced.
        cursor = page.next_cursor
        del page
        if cursor is None:
            break
    yield chunks.take()


def point_csv(
    store: HistoryReader, query: PointQuery, cap: int | None, rows_per_read: int, chunk_bytes: int
) -> AsyncIterator[str]:
    columns = list(query.fields) if query.fields is not None else ["data"]

    async def read(cursor: str | None, limit: int) -> Any:
        return await store.history_page(msgspec.structs.replace(query, cursor=cursor, limit=limit))

    def lines_of(page: Any) -> list[list[str]]:
        lines = []
        for r in page.rows:
            values = [r.data.get(c) for c in columns] if query.fields is not None else [r.data]
            lines.append([r.vehicle_id, rfc3339(r.ts), rfc3339(r.received_at), _cell(r.seq), *map(_cell, values)])
        return lines

    header = ["vehicle_id", "ts", "received_at", "seq", *columns]
    return _paged_csv(header, read, lines_of, cap, rows_per_read, chunk_bytes)


def aggregate_csv(
    store: HistoryReader, query: AggregateQuery, cap: int | None, rows_per_read: int, chunk_bytes: int
) -> AsyncIterator[str]:
    keys = [a.key for a in query.aggs]

    async def read(cursor: str | None, limit: int) -> Any:
        return await store.aggregate(msgspec.structs.replace(query, cursor=cursor, limit=limit))

    def lines_of(page: Any) -> list[list[str]]:
        return [
            [r.vehicle_id, bucket_time(r.bucket, query.tz), str(r.rows), *(_cell(r.values[k]) for k in keys)]
            for r in page.rows
        ]

    return _paged_csv(["vehicle_id", "bucket", "rows", *keys], read, lines_of, cap, rows_per_read, chunk_bytes)
