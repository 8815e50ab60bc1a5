"""How the command line prints: results to stdout (text or ``--json``), messages and progress to stderr."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from decimal import Decimal
from typing import Any


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(args, payload: Any, text: str) -> None:
    """``payload`` as JSON if the command was given ``--json``, else ``text``."""
    if getattr(args, "json", False):
        print_json(payload)
    else:
        print(text)


def print_json(payload: Any) -> None:
    print(json.dumps(plain(payload), indent=2, ensure_ascii=False))


def plain(value: Any) -> Any:
    """``value`` with decimals as strings and times in ISO 8601, for JSON."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(plain(value))
    return str(value)


def table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    print("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


class Progress:
    """``done/total`` on stderr: rewritten in place on a terminal, a line per update otherwise."""

    def __init__(self, total: int, verb: str, *, quiet: bool = False):
        self.total, self.verb, self.quiet = total, verb, quiet
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()

    def update(self, done: int) -> None:
        if self.quiet:
            return
        rate = done / max(time.monotonic() - self.started, 1e-6)
        line = f"{self.verb} {done}/{self.total} ({100 * done / self.total:.0f}%, {rate:.0f}/s)"
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty and not self.quiet:
            print(file=sys.stderr, flush=True)
