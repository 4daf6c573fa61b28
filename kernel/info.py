"""What a database says about itself: for the health endpoint and `fleethub migrate`."""

from __future__ import annotations

import msgspec


class DatabaseInfo(msgspec.Struct, frozen=True):
    backend: str
    # Without its password.
    url: str
    schema_version: int
    detail: str = ""
