"""No passage of 12 or more lines is written twice across the store backends.

Backends that differ only by dialect share one SQL store (`kernel.Sql`); what the twin
store's SQLite and PostgreSQL modules share lives in `twin/stores/sql.py`. This test
keeps it so: it compares the modules of each store seam (`<package>/stores/*.py`) with
each other line by line (blank lines, comments and imports left out, indentation folded)
and fails on any run of 12 equal lines that stands in two of them.
"""

import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WINDOW = 12
_IMPORT = re.compile(r"^(import\s|from\s+\S+\s+import\s)")


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines that count: no blanks, comments or import statements."""
    out: list[tuple[int, str]] = []
    in_import = False
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if in_import:
            in_import = not line.endswith(")")
            continue
        if not line or line.startswith("#"):
            continue
        if _IMPORT.match(line):
            in_import = line.endswith("(")
            continue
        out.append((number, line))
    return out


def _backend_modules() -> list[Path]:
    return sorted(ROOT.glob("*/stores/**/*.py"))


def repeated_passages(paths: list[Path], window: int = WINDOW) -> list[str]:
    """Each run of `window` equal lines found in two different files, as `a.py:10 ~ b.py:40`."""
    seen: dict[tuple[str, ...], list[tuple[Path, int]]] = defaultdict(list)
    for path in paths:
        lines = _code_lines(path)
        for i in range(len(lines) - window + 1):
            key = tuple(text for _, text in lines[i : i + window])
            seen[key].append((path, lines[i][0]))
    found: dict[tuple[Path, Path], str] = {}
    for places in seen.values():
        first = min(places)
        others = [place for place in places if place[0] != first[0]]
        if others:
            second = min(others)
            # One report per pair of files: the first window of a longer passage names it.
            found.setdefault((first[0], second[0]), f"{_name(first)} ~ {_name(second)}")
    return sorted(found.values())


def _name(place: tuple[Path, int]) -> str:
    path, line = place
    return f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{line}"


def test_the_check_finds_a_copied_passage(tmp_path: Path) -> None:
    """Positive control: a 12-line passage copied between two modules is found; 11 lines are not."""
    body = [f"    value_{i} = compute({i}, 'x')" for i in range(12)]
    first = tmp_path / "sqlite.py"
    second = tmp_path / "postgres.py"
    first.write_text("import os\n\ndef a():\n" + "\n".join(body) + "\n", encoding="utf-8")
    second.write_text("from x import (\n    y,\n)\n# other\ndef b():\n" + "\n".join(body) + "\n", encoding="utf-8")
    assert len(repeated_passages([first, second])) == 1
    second.write_text("def b():\n" + "\n".join(body[:11]) + "\n", encoding="utf-8")
    assert repeated_passages([first, second]) == []


def test_no_passage_of_12_lines_is_repeated_between_backend_modules() -> None:
    """The backends of every store seam (`<package>/stores/*.py`) say each thing once."""
    seams = defaultdict(list)
    for module in _backend_modules():
        seams[module.parent].append(module)
    assert ROOT / "twin" / "stores" / "sqlite.py" in seams[ROOT / "twin" / "stores"]
    assert ROOT / "twin" / "stores" / "postgres.py" in seams[ROOT / "twin" / "stores"]
    assert [found for modules in seams.values() for found in repeated_passages(modules)] == []
