"""Pure functions over JSON trees addressed by leaf paths."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from twin.model import PATH_SEP, Json, ReportedEntry


def join(path: tuple[str, ...]) -> str:
    return PATH_SEP.join(path)


def split(key: str) -> tuple[str, ...]:
    return tuple(key.split(PATH_SEP))


def flatten(patch: Mapping[str, Json], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Json]]:
    """Yield (path, value) for every leaf of a patch.

    Nested objects recurse; everything else (scalars, arrays, null) is a leaf. An empty
    object is a leaf too, so `{"config": {}}` is a write that clears `config`.
    """
    for key, value in patch.items():
        path = (*prefix, key)
        if isinstance(value, dict) and value:
            yield from flatten(value, path)
        else:
            yield path, value


def get_path(tree: Mapping[str, Json], path: tuple[str, ...]) -> tuple[bool, Json]:
    """Return (found, value) for `path` in a nested tree."""
    node: Json = tree
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def set_path(tree: dict[str, Json], path: tuple[str, ...], value: Json) -> None:
    """Write `value` at `path`, replacing non-object intermediates; `None` deletes."""
    node = tree
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            if value is None:
                return
            child = {}
            node[key] = child
        node = child
    if value is None:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


def prune_empty(tree: dict[str, Json]) -> dict[str, Json]:
    """Drop objects left empty, so deleting the last key of an object removes the object."""
    out: dict[str, Json] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            pruned = prune_empty(value)
            if pruned:
                out[key] = pruned
        else:
            out[key] = value
    return out


def materialise(entries: Mapping[str, ReportedEntry]) -> tuple[dict[str, Json], dict[str, Json]]:
    """Build the nested reported document and its per-leaf timestamps from entries.

    Entries are applied oldest first, so a newer write to a prefix replaces an older
    subtree and a newer write inside a subtree replaces an older scalar at its prefix.
    The result depends only on the set of entries, never on arrival order.
    """
    doc: dict[str, Json] = {}
    stamps: dict[str, Json] = {}
    for key, entry in sorted(entries.items(), key=lambda kv: (kv[1].ts, kv[0])):
        path = split(key)
        set_path(doc, path, entry.value)
        set_path(stamps, path, None if entry.value is None else _stamp_tree(entry.value, entry.ts))
    return doc, stamps


def _stamp_tree(value: Json, ts: float) -> Json:
    if isinstance(value, dict) and value:
        return {k: _stamp_tree(v, ts) for k, v in value.items()}
    return {"ts": ts}
