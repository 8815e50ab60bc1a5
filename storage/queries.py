"""Named SQL statements, loaded from the ``.sql`` files of :data:`SQL_FILES` (one block per ``-- name --`` header)."""

from __future__ import annotations

import re
from pathlib import Path

_HEADER = re.compile(r"^-- (?P<name>[a-z_]+) --$", re.MULTILINE)


def load(text: str) -> dict[str, str]:
    """Split ``text`` into ``{name: sql}``; the description comment under each header stays in the SQL."""
    blocks: dict[str, str] = {}
    matches = list(_HEADER.finditer(text))
    for match, following in zip(matches, [*matches[1:], None]):
        end = following.start() if following else len(text)
        sql = text[match.end():end].strip().rstrip(";")
        if match["name"] in blocks:
            raise ValueError(f"query {match['name']!r} is defined twice")
        blocks[match["name"]] = sql
    return blocks


#: Every file of named blocks; a name may appear only once across them.
SQL_FILES = ("queries.sql", "scheduling.sql", "dashboard.sql", "operating.sql", "discovery.sql", "portfolio.sql")


def load_files(names: tuple[str, ...] = SQL_FILES) -> dict[str, str]:
    """:func:`load` each file of ``names`` (relative to this module's directory) into one dict."""
    merged: dict[str, str] = {}
    for name in names:
        for query, sql in load((Path(__file__).parent / name).read_text()).items():
            if query in merged:
                raise ValueError(f"query {query!r} is defined twice")
            merged[query] = sql
    return merged


QUERIES = load_files()
