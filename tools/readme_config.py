"""Write the README's configuration table from the settings spec.

``python -m tools.readme_config`` rewrites the table between the README's ``config-table``
markers; ``--check`` only says whether it is current (exit status 1 if not).  A unit test fails
when the README and the spec drift apart.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import settings

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
_START, _END = "<!-- config-table -->\n", "\n<!-- /config-table -->"


def markdown_table() -> str:
    """The configuration table: every variable, its default and meaning, in the spec's order."""
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for variable in settings.VARIABLES.values():
        default = f"`{variable.default}`" if variable.default else "(empty)"
        lines.append(f"| `{variable.name}` | {default} | {variable.doc} |")
    return "\n".join(lines)


def with_table(text: str) -> str:
    """``text`` (the README) with the table between its markers replaced by :func:`markdown_table`."""
    head, rest = text.split(_START, 1)
    _old, tail = rest.split(_END, 1)
    return head + _START + markdown_table() + _END + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.readme_config", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the README's table is not current")
    parser.add_argument("--readme", type=pathlib.Path, default=README, help="the README to update")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    current = with_table(text)
    if args.check:
        if current != text:
            print(f"{args.readme}: the configuration table is stale; run python -m tools.readme_config",
                  file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(current)
    return 0


if __name__ == "__main__":
    sys.exit(main())
