"""The layout table (docs/layout.md) is the tree, and every package is packaged, type-checked and layered."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _packages() -> set[str]:
    """Top-level packages, and the subpackages of the hub's packages (tests' own folders aside)."""
    top = {d.name for d in ROOT.iterdir() if (d / "__init__.py").is_file()}
    nested = {
        f"{d.parent.name}/{d.name}"
        for d in ROOT.glob("*/*")
        if (d / "__init__.py").is_file() and d.parent.name in top and d.parent.name != "tests"
    }
    return top | nested


def _layout_rows() -> set[str]:
    section = (ROOT / "docs" / "layout.md").read_text(encoding="utf-8")
    return {m.group(1).rstrip("/") for m in re.finditer(r"^\| `([a-z_/]+)` \|", section, re.MULTILINE)}


def test_the_layout_table_lists_every_package_and_nothing_else() -> None:
    """Each top-level package and each hub subpackage has one row in docs/layout.md."""
    rows = _layout_rows()
    assert "twin/stores" in rows
    assert rows == _packages()


def test_every_hub_package_is_installed_type_checked_and_under_the_import_contracts() -> None:
    """A new top-level package must be added to the wheel, to mypy and to import-linter together."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    hub = {p for p in _packages() if "/" not in p} - {"tests", "bench", "migrations"}
    installed = {p.rstrip("*") for p in config["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert hub <= installed
    assert "migrations" in installed
    assert hub == set(config["tool"]["mypy"]["packages"])
    assert hub | {"bench"} == set(config["tool"]["importlinter"]["root_packages"])
