"""Merge and delta: pure functions over twin state.

Reported writes are last-writer-wins per leaf on the device timestamp; desired and tags
are JSON merge patches applied in the order the service serialises them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import msgspec

from twin.model import PATH_SEP, DesiredMeta, DesiredStatus, Json, ReportedEntry, TwinState
from twin.paths import flatten, join, prune_empty, set_path, split

_encode = msgspec.json.Encoder(order="sorted").encode


def json_equal(a: Json, b: Json) -> bool:
    """JSON equality: 80 equals 80.0, but true never equals 1 and arrays compare whole."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@dataclass(slots=True)
class ReportedChange:
    """What one reported patch did to a twin."""

    applied: list[tuple[str, ...]] = field(default_factory=list)
    # Leaves whose value differs from before (a subset of `applied`).
    changed: list[tuple[str, ...]] = field(default_factory=list)
    # Leaves not applied because the twin already holds a newer write.
    stale: list[tuple[str, ...]] = field(default_factory=list)
    # The entry each applied leaf replaced (None when the key is new), by joined path.
    previous: dict[str, ReportedEntry | None] = field(default_factory=dict)


def _newer(new: ReportedEntry, old: ReportedEntry) -> bool:
    if new.ts != old.ts:
        return new.ts > old.ts
    # Equal timestamps need a total order so replicas agree; the encoded value gives one.
    return _encode(new.value) > _encode(old.value)


def _shadowed(entries: Mapping[str, ReportedEntry], path: tuple[str, ...], ts: float) -> bool:
    """True when a prefix of `path` holds a newer write, which hides this one for good."""
    for depth in range(1, len(path)):
        prefix = entries.get(join(path[:depth]))
        if prefix is not None and prefix.ts > ts:
            return True
    return False


def apply_reported(state: TwinState, leaves: Iterable[tuple[tuple[str, ...], Json]], ts: float) -> ReportedChange:
    """Apply reported leaves written at device time `ts`; mutates `state.reported`."""
    entries = state.reported
    change = ReportedChange()
    for path, value in leaves:
        key = join(path)
        new = ReportedEntry(value, ts)
        old = entries.get(key)
        if old is not None and not _newer(new, old):
            if not (old.ts == ts and json_equal(old.value, value)):
                change.stale.append(path)
            continue
        if _shadowed(entries, path, ts):
            change.stale.append(path)
            continue
        entries[key] = new
        change.applied.append(path)
        change.previous[key] = old
        if old is None or not json_equal(old.value, value):
            change.changed.append(path)
        if old is None or value is None:
            _drop_older_below(entries, key, ts)
    return change


def _drop_older_below(entries: dict[str, ReportedEntry], key: str, ts: float) -> None:
    # A write to a prefix hides every older write beneath it forever; forgetting them
    # keeps the entry map bounded without changing what any arrival order converges to.
    below = key + PATH_SEP
    for other in [k for k, e in entries.items() if k.startswith(below) and e.ts < ts]:
        del entries[other]


def reported_value(state: TwinState, path: tuple[str, ...]) -> tuple[bool, Json]:
    """The visible reported value at a leaf path, as (found, value)."""
    entry = state.reported.get(join(path))
    if entry is None or entry.value is None or _shadowed(state.reported, path, entry.ts):
        return False, None
    return True, entry.value


def merge_patch(target: dict[str, Json], patch: Mapping[str, Json]) -> dict[str, Json]:
    """RFC 7396 merge patch: objects merge recursively, null deletes, the rest replaces."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            current = out.get(key)
            out[key] = merge_patch(current if isinstance(current, dict) else {}, value)
        else:
            out[key] = value
    return out


def apply_desired(
    state: TwinState,
    patch: Mapping[str, Json],
    now: float,
    ttl_s: float | None = None,
    *,
    clear_applied: bool = False,
) -> None:
    """Merge a desired patch and restart the lifecycle of every leaf it touches."""
    state.desired = prune_empty(merge_patch(state.desired, patch))
    expires_at = now + ttl_s if ttl_s is not None else None
    for path, value in flatten(patch):
        key = join(path)
        # Replacing or deleting a subtree ends the lifecycle of everything beneath it.
        below = key + PATH_SEP
        for stale in [k for k in state.desired_meta if k == key or k.startswith(below)]:
            del state.desired_meta[stale]
        if value is not None:
            state.desired_meta[key] = DesiredMeta(ts=now, expires_at=expires_at, clear_on_apply=clear_applied)
    # Drop lifecycle entries whose desired leaf no longer exists (e.g. parent deleted).
    live = {join(p) for p, _ in flatten(state.desired)}
    for orphan in [k for k in state.desired_meta if k not in live]:
        del state.desired_meta[orphan]
    refresh_desired_status(state, now)


def refresh_desired_status(state: TwinState, now: float) -> bool:
    """Re-derive each desired leaf's status from reported values and time; True if any changed.

    Applied leaves marked `clear_on_apply` leave desired altogether.
    """
    moved = False
    cleared: list[str] = []
    for key, meta in state.desired_meta.items():
        path = split(key)
        found, want = _desired_leaf(state.desired, path)
        if not found:
            continue
        have_found, have = reported_value(state, path)
        matches = have_found and json_equal(have, want)
        status = meta.status
        if matches:
            status = DesiredStatus.APPLIED
        elif status is DesiredStatus.APPLIED:
            # The vehicle drifted away from an applied value: it is wanted again.
            status = DesiredStatus.PENDING
        if status is DesiredStatus.PENDING and meta.expires_at is not None and now >= meta.expires_at:
            status = DesiredStatus.EXPIRED
        if status is not meta.status:
            meta.status = status
            if status is not DesiredStatus.REJECTED:
                meta.reason = None
            moved = True
            if status is DesiredStatus.APPLIED and meta.clear_on_apply:
                cleared.append(key)
    for key in cleared:
        del state.desired_meta[key]
        set_path(state.desired, split(key), None)
    if cleared:
        state.desired = prune_empty(state.desired)
    return moved


def reject_desired(state: TwinState, reasons: Mapping[str, str]) -> list[str]:
    """Mark desired leaves rejected by the vehicle (`{"a.b": "reason"}`); returns unknown paths."""
    unknown: list[str] = []
    for dotted, reason in reasons.items():
        key = join(tuple(dotted.split(".")))
        meta = state.desired_meta.get(key)
        if meta is None:
            unknown.append(dotted)
            continue
        meta.status = DesiredStatus.REJECTED
        meta.reason = reason
    return unknown


def _desired_leaf(desired: Mapping[str, Json], path: tuple[str, ...]) -> tuple[bool, Json]:
    node: Json = desired
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def effective_status(meta: DesiredMeta, now: float | None) -> DesiredStatus:
    """The status at time `now`: a pending value whose ttl ran out is expired even before
    anything has rewritten the stored status (the vehicle may have been silent since)."""
    if (
        meta.status is DesiredStatus.PENDING
        and now is not None
        and meta.expires_at is not None
        and now >= meta.expires_at
    ):
        return DesiredStatus.EXPIRED
    return meta.status


def compute_delta(state: TwinState, now: float | None = None) -> dict[str, Json]:
    """Desired leaves the vehicle has yet to apply (pending at `now`), as a nested object."""
    delta: dict[str, Json] = {}
    for key, meta in state.desired_meta.items():
        if effective_status(meta, now) is not DesiredStatus.PENDING:
            continue
        path = split(key)
        found, want = _desired_leaf(state.desired, path)
        if found:
            set_path(delta, path, want)
    return delta
