"""Names and field paths: which words are taken, and how a dotted path finds its source.

A path is ASCII names joined by dots. Its first name picks the part of the twin:
`desired.` and `tags.` read those parts, `reported.` reads reported explicitly (for
a reported key that is itself called "desired" or "tags"), and anything else reads
reported: `battery.temp_c` is `reported.battery.temp_c`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from rules.context import Path, Source
from rules.errors import quote

NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

KEYWORDS: Final = frozenset({"and", "or", "not", "in", "true", "false", "null"})

# Words a rule may not use as names, with what to write instead. They are mostly
# Python's, refused so that a rule written as Python fails loudly instead of reading a
# field that happens to be called "True" or "is".
RESERVED: Final[dict[str, str]] = {
    "True": "write 'true'",
    "False": "write 'false'",
    "None": "write 'null'",
    "is": "write '==' or '!='",
    "lambda": "there are no lambdas",
    "import": "there are no imports",
    "from": "there are no imports",
    "if": "combine conditions with 'and' and 'or'",
    "else": "combine conditions with 'and' and 'or'",
    "elif": "combine conditions with 'and' and 'or'",
    "for": "there are no loops; use 'in' with a list",
    "while": "there are no loops",
    "def": "there are no definitions",
    "class": "there are no definitions",
    "return": "a rule is one expression",
    "yield": "a rule is one expression",
    "await": "a rule is one expression",
    "async": "a rule is one expression",
    "with": "a rule is one expression",
    "as": "a rule is one expression",
    "del": "a rule is one expression",
    "global": "a rule is one expression",
    "nonlocal": "a rule is one expression",
    "pass": "a rule is one expression",
    "raise": "a rule is one expression",
    "try": "a rule is one expression",
    "except": "a rule is one expression",
    "finally": "a rule is one expression",
    "assert": "a rule is one expression",
    "break": "a rule is one expression",
    "continue": "a rule is one expression",
}

_PREFIXES: Final = {"reported": Source.REPORTED, "desired": Source.DESIRED, "tags": Source.TAGS}
_EXAMPLES: Final = {"reported": "soc", "desired": "charge_limit", "tags": "depot"}


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a field name or function name, or None when it can."""
    if name.startswith("__"):
        return f"names starting with '__' are not allowed: '{name}'"
    hint = RESERVED.get(name)
    if hint is not None:
        return f"'{name}' is reserved; {hint}"
    return None


def resolve(segments: Sequence[str]) -> tuple[Source, Path]:
    """The source and path named by already-validated `segments`.

    Raises ValueError with a message for the user when the path names a whole part
    of the twin (`desired` alone) instead of a key in it.
    """
    source = _PREFIXES.get(segments[0])
    if source is None:
        return Source.REPORTED, tuple(segments)
    if len(segments) == 1:
        part = segments[0]
        raise ValueError(
            f"'{part}' alone is the whole {part} document; name a key in it, like {part}.{_EXAMPLES[part]}"
        )
    return source, tuple(segments[1:])


def parse_path(text: str) -> tuple[Source, Path]:
    """Parse a dotted path given as text (a `no_data_for` argument, a placeholder).

    Raises ValueError with a message for the user when `text` is not a path.
    """
    segments = text.split(".")
    for segment in segments:
        if not NAME.fullmatch(segment):
            raise ValueError(f"{quote(text)} is not a field path; write names joined by dots, like battery.temp_c")
        if segment in KEYWORDS:
            raise ValueError(f"'{segment}' is a keyword and cannot be part of a field path")
        problem = name_problem(segment)
        if problem is not None:
            raise ValueError(problem)
    return resolve(segments)


def format_path(source: Source, path: Path) -> str:
    """The text that names `path` in `source`, as a rule would write it."""
    dotted = ".".join(path)
    if source is Source.REPORTED:
        return f"reported.{dotted}" if path[0] in _PREFIXES else dotted
    return f"{source.value}.{dotted}"
