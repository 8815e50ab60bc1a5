"""storage/schema.sql, read as text: each statement once (it is run whole at every release)."""

from __future__ import annotations

import re
from collections import Counter
from importlib import resources


def statements() -> list[str]:
    text = resources.files("storage").joinpath("schema.sql").read_text()
    text = re.sub(r"--[^\n]*", "", text)
    # Function bodies are dollar-quoted and hold semicolons of their own: keep each whole.
    text = re.sub(r"\$(\w*)\$.*?\$\1\$", lambda m: m.group(0).replace(";", "\0"), text, flags=re.DOTALL)
    return [" ".join(s.split()) for s in text.split(";") if s.strip()]


def test_no_statement_is_repeated():
    repeated = [s for s, n in Counter(statements()).items() if n > 1]
    assert repeated == []


def test_the_holdings_of_unknown_decimals_may_have_null_decimals_and_balance():
    assert {s for s in statements() if "DROP NOT NULL" in s} >= {
        "ALTER TABLE holdings ALTER COLUMN decimals DROP NOT NULL",
        "ALTER TABLE holdings ALTER COLUMN balance DROP NOT NULL"}
