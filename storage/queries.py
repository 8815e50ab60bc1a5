"""Named SQL statements, loaded from ``queries.sql`` (one block per ``-- name --`` header)."""

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


QUERIES = load((Path(__file__).with_name("queries.sql")).read_text())
