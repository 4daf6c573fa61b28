"""Tests mirror the layout: each folder of `tests/unit`, `tests/integration` and `tests/property` is a package."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("unit", "integration", "property")


def _package_dirs() -> set[str]:
    """Every package and subpackage of the tree, as a relative path (`twin`, `twin/stores`, `firmware_sim/load`)."""
    return {
        str(init.parent.relative_to(ROOT))
        for init in ROOT.glob("**/__init__.py")
        if not ({"tests", ".venv", "build"} & set(init.relative_to(ROOT).parts))
    }


def test_every_test_folder_is_named_for_a_package() -> None:
    """`tests/<kind>/<path>` exists only where `<path>` is a package, so a test is found where its code is."""
    packages = _package_dirs()
    assert {"twin", "twin/stores", "kernel"} <= packages
    strays = sorted(
        str(folder.relative_to(ROOT))
        for kind in KINDS
        for folder in (ROOT / "tests" / kind).rglob("*")
        if folder.is_dir()
        and folder.name != "__pycache__"
        and str(folder.relative_to(ROOT / "tests" / kind)) not in packages
    )
    assert strays == []
