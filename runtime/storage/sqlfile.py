"""Loading SQL from `.sql` files split into named sections (procrastinate's layout).

A section starts at a line `-- name: some_name` and runs to the next such
line. Sections named `migration_<N>` are the schema migrations, applied in
order of N. Each backend keeps its SQL beside itself and loads it once at import.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

_HEADER = re.compile(r"^--\s*name:\s*(\w+)\s*$")
_MIGRATION = re.compile(r"^migration_(\d+)$")


def parse(text: str) -> dict[str, str]:
    """Split `text` into {name: sql}; text before the first header is ignored."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            name = header.group(1)
            if name in sections:
                raise ValueError(f"SQL section {name!r} appears twice")
            current = sections[name] = []
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}


def load(path: str | Path) -> Mapping[str, str]:
    """The sections of one `.sql` file, read-only."""
    return MappingProxyType(parse(Path(path).read_text(encoding="utf-8")))


def migrations(queries: Mapping[str, str]) -> list[tuple[int, str]]:
    """[(version, sql)] of every `migration_<N>` section, oldest first; versions must be 1..N."""
    found = sorted((int(m.group(1)), sql) for name, sql in queries.items()
                   if (m := _MIGRATION.match(name)))
    if [version for version, _ in found] != list(range(1, len(found) + 1)):
        raise ValueError("migrations must be numbered 1, 2, 3, ... without gaps")
    return found


def statements(sql: str) -> list[str]:
    """Split a script into single statements.

    `executescript` would commit the surrounding transaction first, so a
    migration runs statement by statement inside its own BEGIN IMMEDIATE.
    SQLite's own completeness test copes with `;` inside strings and triggers.
    """
    out: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                out.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(line.strip().startswith("--") or not line.strip()
                                  for line in buffer.splitlines()):
        raise ValueError(f"unterminated SQL statement: {buffer.strip()[:60]!r}")
    return out
