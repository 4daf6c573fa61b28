"""Limits on what a vehicle or operator may write, checked before anything is applied."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated

import msgspec
from msgspec import Meta

from kernel import LimitExceeded
from twin.model import PATH_SEP, Json

# One regex search per key instead of a generator over its characters: this check runs
# for every key of every message.
_CONTROL = re.compile("[\x00-\x1f]")


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Every limit has a default that suits vehicle telemetry; all are settings."""

    max_payload_bytes: Annotated[int, Meta(ge=1, description="Bytes of one MQTT payload or HTTP patch body.")] = 65_536
    max_document_bytes: Annotated[
        int, Meta(ge=1, description="Bytes of the whole twin document (desired + reported + tags, encoded).")
    ] = 65_536
    max_depth: Annotated[int, Meta(ge=1, description="Levels of nested objects in one patch.")] = 10
    max_keys_per_patch: Annotated[int, Meta(ge=1, description="Leaves in one patch.")] = 500
    max_key_length: Annotated[int, Meta(ge=1, description="Characters in one key.")] = 128
    max_string_length: Annotated[int, Meta(ge=1, description="Characters in one string value.")] = 4_096
    max_desired_ttl_s: Annotated[
        float, Meta(gt=0, description="Longest ttl_s of a desired write (pending values expire after it): 366 days.")
    ] = 31_622_400.0


def check_ttl(ttl_s: float | None, limits: Limits) -> None:
    """Refuse a TTL that is not a positive finite number of seconds up to `max_desired_ttl_s`."""
    if ttl_s is not None and not 0 < ttl_s <= limits.max_desired_ttl_s:
        raise LimitExceeded(
            "bad_ttl", f"ttl_s must be above 0 and at most {limits.max_desired_ttl_s:g} s (limits.max_desired_ttl_s)"
        )


def check_patch(patch: Mapping[str, Json], limits: Limits, *, where: str = "") -> None:
    """Raise `LimitExceeded` naming the first offending key; otherwise return quietly."""
    leaves = _walk(patch, limits, 1, where)
    if leaves > limits.max_keys_per_patch:
        raise LimitExceeded("too_many_keys", f"patch has {leaves} keys, the limit is {limits.max_keys_per_patch}")


def _walk(node: Mapping[str, Json], limits: Limits, depth: int, where: str) -> int:
    if depth > limits.max_depth:
        raise LimitExceeded("too_deep", f"nesting deeper than {limits.max_depth} levels at '{where}'")
    leaves = 0
    for key, value in node.items():
        path = f"{where}.{key}" if where else key
        if not key or len(key) > limits.max_key_length:
            raise LimitExceeded("bad_key", f"key '{path[:80]}' must be 1-{limits.max_key_length} characters")
        if PATH_SEP in key or _CONTROL.search(key):
            raise LimitExceeded("bad_key", f"key '{path[:80]!r}' contains control characters")
        if isinstance(value, dict) and value:
            leaves += _walk(value, limits, depth + 1, path)
            continue
        leaves += 1
        _check_value(value, limits, depth, path)
    return leaves


# Integers a 64-bit column, a jsonb number and every JSON reader downstream can hold.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def _check_value(value: Json, limits: Limits, depth: int, path: str) -> None:
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX and not isinstance(value, bool):
            raise LimitExceeded("number_out_of_range", f"value of '{path}' is outside the signed 64-bit range")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise LimitExceeded("number_out_of_range", f"value of '{path}' is not a finite number")
    elif isinstance(value, str):
        if "\x00" in value:
            # PostgreSQL's jsonb cannot hold NUL; refusing it keeps every store able to take any twin.
            raise LimitExceeded("bad_string", f"value of '{path}' contains a NUL character")
        if len(value) > limits.max_string_length:
            raise LimitExceeded(
                "string_too_long",
                f"value of '{path}' has {len(value)} characters, the limit is {limits.max_string_length}",
            )
    elif isinstance(value, list):
        if depth + 1 > limits.max_depth:
            raise LimitExceeded("too_deep", f"nesting deeper than {limits.max_depth} levels at '{path}'")
        for item in value:
            if isinstance(item, dict):
                _walk(item, limits, depth + 1, path)
            else:
                _check_value(item, limits, depth + 1, path)
