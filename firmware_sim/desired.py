"""The settings an operator may change on a vehicle, and how a delta is checked against them.

Pure: `apply_desired` takes the current settings and a delta and returns the new
settings with what was applied and what was rejected (and why), keyed by dotted path as
the `twin/rejected` payload wants them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

CHARGE_LIMIT_MIN = 50
CHARGE_LIMIT_MAX = 100
REPORT_INTERVAL_MIN_S = 1
REPORT_INTERVAL_MAX_S = 3600

# Keys the vehicle reports but an operator cannot set; saying so beats "unknown setting".
READ_ONLY = frozenset({"ts", "seq", "gps", "speed", "heading", "soc", "charging", "odometer_km", "ignition"})

_encode = msgspec.json.Encoder().encode


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Reported settings; each is also a desired key (see `SETTING_PATHS`)."""

    charge_limit: int = 80
    report_interval_s: float = 10.0
    doors_locked: bool = True


class DesiredResult(msgspec.Struct, frozen=True):
    settings: Settings
    # Dotted path to the value now in effect.
    applied: dict[str, Any]
    # Dotted path to why the value cannot be applied.
    rejected: dict[str, str]


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    text = _encode(value).decode()
    return text if len(text) <= 40 else text[:37] + "..."


def _charge_limit(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not (CHARGE_LIMIT_MIN <= value <= CHARGE_LIMIT_MAX):
        raise _Rejected(f"must be an integer from {CHARGE_LIMIT_MIN} to {CHARGE_LIMIT_MAX}, got {_describe(value)}")
    return value


def _report_interval(value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not (REPORT_INTERVAL_MIN_S <= value <= REPORT_INTERVAL_MAX_S)
    ):
        raise _Rejected(
            f"must be a number of seconds from {REPORT_INTERVAL_MIN_S} to {REPORT_INTERVAL_MAX_S}, "
            f"got {_describe(value)}"
        )
    return value


def _locked(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Rejected(f"must be true or false, got {_describe(value)}")
    return value


# Dotted desired path -> (Settings field, validator returning the value to apply).
SETTING_PATHS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "charge_limit": ("charge_limit", _charge_limit),
    "config.report_interval_s": ("report_interval_s", _report_interval),
    "doors.locked": ("doors_locked", _locked),
}
_BRANCHES = frozenset(path.rpartition(".")[0] for path in SETTING_PATHS if "." in path)


def apply_desired(settings: Settings, delta: Mapping[str, Any]) -> DesiredResult:
    """Apply every value of `delta` this vehicle understands; reject the rest with a reason.

    A `null` leaf means "no desired value" and is neither applied nor rejected: the
    vehicle keeps what it has.
    """
    changes: dict[str, Any] = {}
    applied: dict[str, Any] = {}
    rejected: dict[str, str] = {}
    for path, value in _leaves(delta, ""):
        if value is None:
            continue
        try:
            field, value_to_apply = _check(path, value)
        except _Rejected as exc:
            rejected[path] = exc.reason
            continue
        changes[field] = value_to_apply
        applied[path] = value_to_apply
    new_settings = msgspec.structs.replace(settings, **changes) if changes else settings
    return DesiredResult(settings=new_settings, applied=applied, rejected=rejected)


def _check(path: str, value: Any) -> tuple[str, Any]:
    spec = SETTING_PATHS.get(path)
    if spec is not None:
        field, validate = spec
        return field, validate(value)
    if path.partition(".")[0] in READ_ONLY:
        raise _Rejected("read-only: reported by the vehicle, not settable")
    if path in _BRANCHES:
        raise _Rejected(f"must be an object, got {_describe(value)}")
    raise _Rejected("unknown setting")


def _leaves(node: Mapping[str, Any], prefix: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else key
        # Objects under a setting's own path are leaves so they get a type error, not a walk.
        if isinstance(value, dict) and path not in SETTING_PATHS:
            out.extend(_leaves(value, path))
        else:
            out.append((path, value))
    return out
