"""Raster tiles from a local MBTiles file (an SQLite database), for a basemap without internet."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from kernel import ConfigError

_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}


class MbTiles:
    def __init__(self, path: str) -> None:
        if not Path(path).is_file():
            raise ConfigError(f"setting 'console.tile_mbtiles': no such file {path!r}")
        self.path = path
        try:
            with self._connect() as db:
                found = db.execute("SELECT value FROM metadata WHERE name = 'format'").fetchone()
        except sqlite3.Error as exc:
            raise ConfigError(f"setting 'console.tile_mbtiles': {path!r} is not an MBTiles file ({exc})") from None
        fmt = found[0] if found else "png"
        if fmt not in _TYPES:
            raise ConfigError(f"setting 'console.tile_mbtiles': raster tiles (png, jpg, webp) only, got {fmt!r}")
        self.content_type = _TYPES[fmt]

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)

    def _read(self, z: int, x: int, y: int) -> bytes | None:
        # MBTiles rows are in TMS order: row 0 is the southern edge.
        with self._connect() as db:
            found = db.execute(
                "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
                (z, x, (1 << z) - 1 - y),
            ).fetchone()
        return None if found is None else bytes(found[0])

    async def tile(self, z: int, x: int, y: int) -> bytes | None:
        if not (0 <= z <= 30 and 0 <= x < (1 << z) and 0 <= y < (1 << z)):
            return None
        return await asyncio.to_thread(self._read, z, x, y)
