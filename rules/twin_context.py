"""An `EvalContext` over a live `TwinState`, as it was right after one update.

The twin's reported state is a flat map of joined leaf paths to entries. A batch
may carry several updates of one vehicle while `state` already holds the last of
them, so each update is evaluated with an `overlay`: the entries later updates of the
batch replaced, as they were before those updates (None where a key did not exist).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from rules.context import MISSING, Path, Source
from twin import PATH_SEP, ReportedEntry, TwinState

_NONE: Final[Mapping[str, ReportedEntry | None]] = {}
_ABSENT: Final = object()
_REPORTED: Final = Source.REPORTED


def _get(tree: Mapping[str, object], path: Path) -> object:
    node: object = tree
    for key in path:
        if not isinstance(node, dict):
            return MISSING
        node = node.get(key, MISSING)
    return MISSING if node is None else node


class TwinContext:
    """One vehicle at one update. Satisfies `rules.EvalContext`."""

    __slots__ = (
        "_reads",
        "_reads_before",
        "_stamps",
        "_stamps_before",
        "memo",
        "now",
        "overlay",
        "previous_entries",
        "state",
    )

    def __init__(
        self,
        state: TwinState,
        now: float,
        previous: Mapping[str, ReportedEntry | None] = _NONE,
        overlay: Mapping[str, ReportedEntry | None] = _NONE,
    ) -> None:
        self.state = state
        self.now = now
        self.previous_entries = previous
        self.overlay = overlay
        # Many rules read the same few fields of one update: each read is done once.
        self._reads: dict[Path, object] = {}
        self._reads_before: dict[Path, object] = {}
        self._stamps: dict[Path, object] = {}
        self._stamps_before: dict[Path, object] = {}
        self.memo: dict[object, object] = {}

    # -- entries as of this update ------------------------------------------------------

    def _entry(self, key: str) -> ReportedEntry | None:
        if key in self.overlay:
            return self.overlay[key]
        return self.state.reported.get(key)

    def _keys(self) -> list[str]:
        reported = self.state.reported
        if not self.overlay:
            return list(reported)
        return [*reported, *(key for key in self.overlay if key not in reported)]

    def _entry_before(self, key: str) -> ReportedEntry | None:
        if key in self.previous_entries:
            return self.previous_entries[key]
        return self._entry(key)

    def _read(self, path: Path, before: bool) -> object:
        entry_of = self._entry_before if before else self._entry
        key = PATH_SEP.join(path)
        entry = entry_of(key)
        if entry is not None:
            if entry.value is None or self._shadowed(path, entry.ts, before):
                return MISSING
            return entry.value
        # Not a leaf: an object assembled from the leaves under it, or nothing.
        prefix = key + PATH_SEP
        under = [(k, entry_of(k)) for k in self._keys() if k.startswith(prefix)]
        tree: dict[str, object] = {}
        for k, e in sorted(under, key=lambda item: item[1].ts if item[1] is not None else 0.0):
            if e is None or e.value is None:
                continue
            node = tree
            parts = k[len(prefix) :].split(PATH_SEP)
            for part in parts[:-1]:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
            node[parts[-1]] = e.value
        return tree if tree else MISSING

    def _shadowed(self, path: Path, ts: float, before: bool) -> bool:
        get = self._entry_before if before else self._entry
        for depth in range(1, len(path)):
            prefix = get(PATH_SEP.join(path[:depth]))
            if prefix is not None and prefix.ts > ts:
                return True
        return False

    def _stamp(self, path: Path, before: bool) -> float | None:
        entry_of = self._entry_before if before else self._entry
        key = PATH_SEP.join(path)
        entry = entry_of(key)
        if entry is not None:
            return entry.ts
        prefix = key + PATH_SEP
        stamps = [e.ts for k in self._keys() if k.startswith(prefix) and (e := entry_of(k)) is not None]
        return max(stamps) if stamps else None

    # -- EvalContext ----------------------------------------------------------------------

    def value(self, path: Path, source: Source) -> object:
        if source is _REPORTED:
            reads = self._reads
            value = reads.get(path, _ABSENT)
            if value is _ABSENT:
                value = reads[path] = self._read(path, False)
            return value
        return _get(self.state.desired if source is Source.DESIRED else self.state.tags, path)

    def previous(self, path: Path) -> object:
        reads = self._reads_before
        value = reads.get(path, _ABSENT)
        if value is _ABSENT:
            value = reads[path] = self._read(path, True)
        return value

    def reported_at(self, path: Path) -> float | None:
        stamps = self._stamps
        stamp = stamps.get(path, _ABSENT)
        if stamp is _ABSENT:
            stamp = stamps[path] = self._stamp(path, False)
        return stamp  # type: ignore[return-value]

    def previous_reported_at(self, path: Path) -> float | None:
        stamps = self._stamps_before
        stamp = stamps.get(path, _ABSENT)
        if stamp is _ABSENT:
            stamp = stamps[path] = self._stamp(path, True)
        return stamp  # type: ignore[return-value]

    def connected(self) -> bool | None:
        return self.state.connection.connected

    def connected_since(self) -> float | None:
        return self.state.connection.since
