"""Vehicle secrets for logging in to a secure hub: the CSV that `fleethub vehicles import --output` writes.

The file has a header row with `vehicle_id` and `secret` columns (a `fleet` column and any other
are ignored), one vehicle per row, in the order the simulator runs them.
"""

from __future__ import annotations

import csv
from pathlib import Path

from firmware_sim import topics
from firmware_sim.errors import ConfigError


def read_secrets(path: str | Path) -> dict[str, str]:
    """Vehicle id → secret, in file order; raises ConfigError naming the file and row."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"vehicle_id", "secret"} - set(reader.fieldnames or ())
            if missing:
                raise ConfigError(
                    f"{path}: needs a header row with vehicle_id and secret columns "
                    f"(as `fleethub vehicles import --output` writes), missing {', '.join(sorted(missing))}"
                )
            secrets: dict[str, str] = {}
            for row in reader:
                vid, secret = (row.get("vehicle_id") or "").strip(), (row.get("secret") or "").strip()
                if not topics.VEHICLE_ID_PATTERN.fullmatch(vid) or not secret:
                    raise ConfigError(f"{path}, line {reader.line_num}: needs a vehicle id and its secret")
                if vid in secrets:
                    raise ConfigError(f"{path}, line {reader.line_num}: {vid} appears twice")
                secrets[vid] = secret
    except OSError as exc:
        raise ConfigError(f"cannot read the secrets file: {exc}") from None
    if not secrets:
        raise ConfigError(f"{path}: no vehicles in the secrets file")
    return secrets
