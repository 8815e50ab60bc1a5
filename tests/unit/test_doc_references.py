"""What the docs point at exists: the files README and docs/ link, the Lua scripts docstrings name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
_LUA_NAMED = re.compile(r"``(?:lua/)?([a-z_0-9]+\.lua)``")


def docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", docs(), ids=lambda p: p.name)
def test_every_relative_link_of_the_docs_exists(doc: Path):
    targets = [m.group(1) for m in _LINK.finditer(doc.read_text())]
    missing = [t for t in targets if "://" not in t and not t.startswith("mailto:") and not (doc.parent / t).exists()]
    assert missing == []


def test_every_lua_script_a_docstring_names_exists():
    named = {(module, name) for package in ("actors", "chaindata") for module in (ROOT / package).rglob("*.py")
             for name in _LUA_NAMED.findall(module.read_text())}
    assert named  # the check reads something
    missing = [f"{module.relative_to(ROOT)}: {name}" for module, name in named
               if not (module.parent / name).exists() and not (module.parent / "lua" / name).exists()]
    assert missing == []
