"""Installing fleethub as `make run` does prints no warning, and the wheel holds the migrations."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_building_the_package_prints_no_warning_and_ships_every_migration(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    # pip's own notes about this machine's package index configuration are not the build's.
    lines = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if "warning" in line.lower() and "Location 'file:" not in line
    ]
    assert lines == [], "\n".join(lines)
    (wheel,) = tmp_path.glob("fleethub-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for backend in ("sqlite", "postgres"):
        shipped = {n for n in names if n.startswith(f"migrations/{backend}/") and n.endswith(".sql")}
        assert shipped == {f"migrations/{backend}/{p.name}" for p in (ROOT / "migrations" / backend).glob("*.sql")}
        assert shipped
