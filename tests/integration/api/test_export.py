"""CSV exports over real HTTP: streamed with backpressure, so a client that stops reading stalls its export."""

import asyncio
import json
import socket
import sqlite3
import time

from security import CLI, Role

ROWS = 200_000


def _fill_history(db: str, vehicle_id: str, rows: int) -> None:
    """Write `rows` history rows straight into the hub's SQLite file (ingest would take minutes)."""
    data = json.dumps({"soc": 55.5, "speed": 42.0, "gps": {"lat": 19.4326, "lon": -99.1332}, "doors": "locked"})
    with sqlite3.connect(db) as con:
        con.executemany(
            "INSERT INTO history (vehicle_id, ts, received_at, seq, data) VALUES (?, ?, ?, ?, ?)",
            ((vehicle_id, 1.7e9 + i, 1.7e9 + i, i, data) for i in range(rows)),
        )


async def _settled(read, wait_s: float = 0.5) -> int:
    """The value of `read()` once it has not changed for `wait_s`."""
    last = -1
    while (now := read()) != last:
        last = now
        await asyncio.sleep(wait_s)
    return last


async def test_a_client_that_stops_reading_stalls_its_export(secure_hub, tmp_path) -> None:
    """A stalled CSV export reads a bounded part of the history; reading on delivers every row, each read once."""
    hub = secure_hub
    await hub.security.add_user("exporter", Role.VIEWER, ("acme",), actor=CLI)
    token = (await hub.security.issue_token("exporter", actor=CLI)).secret
    await hub.security.provision("veh-export", "acme", actor=CLI)
    _fill_history(str(tmp_path / "hub.db"), "veh-export", ROWS)
    store = hub.service.store
    served = {"rows": 0}
    page = store.history_page

    async def counting(query):
        result = await page(query)
        served["rows"] += len(result.rows)
        return result

    store.history_page = counting
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", hub.http_port))
    request = (
        "GET /api/v1/vehicles/veh-export/history HTTP/1.1\r\nHost: hub\r\nAccept: text/csv\r\n"
        f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    try:
        await loop.sock_sendall(sock, request.encode())
        stalled = await _settled(lambda: served["rows"])
        # What the socket buffers (a few MB at most) and one store read: far from the whole export.
        assert 0 < stalled < ROWS // 3, stalled
        received = bytearray()
        started = time.monotonic()
        while chunk := await loop.sock_recv(sock, 1 << 20):
            received.extend(chunk)
            assert time.monotonic() - started < 60, "the export did not finish"
    finally:
        sock.close()
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert b"200 OK" in head.split(b"\r\n")[0]
    assert b"content-type: text/csv; charset=utf-8" in head.lower()
    # Chunked transfer encoding: count CSV lines by their vehicle id rather than decoding the framing.
    assert body.count(b"veh-export,") == ROWS
    assert served["rows"] == ROWS
