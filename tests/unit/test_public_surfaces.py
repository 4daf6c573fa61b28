"""Packages meet through their public surfaces: names in `__all__`, and services rather than their stores."""

import ast
import importlib
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The hub's packages, as the import contracts name them (the benchmarks import, nothing imports them).
PACKAGES = tuple(
    p
    for p in tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"][
        "root_packages"
    ]
    if p != "bench"
)
# Adapters at the edge talk to services; a store is the service's own business.
EDGES = ("api", "broker", "console")
_THROUGH_TO_STORE = re.compile(r"\b(?!self\b)\w+\.store\.\w+")


def _cross_package_imports() -> list[tuple[str, str, str]]:
    """(file, package, name) of every `from <other package> import <name>` in the hub and the benchmarks."""
    found = []
    for source in (*PACKAGES, "bench"):
        for path in (ROOT / source).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in set(PACKAGES) - {source}:
                    found += [(str(path.relative_to(ROOT)), node.module, a.name) for a in node.names]
    return found


def test_every_name_imported_from_another_package_is_in_its_all() -> None:
    """import-linter keeps other packages out of a package's modules; this keeps them to what `__all__` names."""
    imports = _cross_package_imports()
    assert {"twin", "kernel", "security"} <= set(PACKAGES)
    assert ("api/deps.py", "twin", "TwinService") in imports
    exported = {p: set(importlib.import_module(p).__all__) for p in PACKAGES}
    assert [(f, p, n) for f, p, n in imports if n not in exported[p]] == []


def test_the_edges_do_not_reach_through_services_to_their_stores() -> None:
    """The API, the broker and the console call services; `x.store.method(...)` outside `self` is a hole."""
    assert _THROUGH_TO_STORE.search("token = await deps.security.store.get_token(tid)")
    assert not _THROUGH_TO_STORE.search("await self.store.get_token(tid)")
    holes = [
        f"{path.relative_to(ROOT)}:{number}"
        for edge in EDGES
        for path in (ROOT / edge).rglob("*.py")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _THROUGH_TO_STORE.search(line)
    ]
    assert holes == []
