"""Paths, messages and small process helpers shared by every task."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
VENV_PY = VENV / "bin" / "python"
LOCAL = ROOT / ".local"
LOGS = LOCAL / "logs"
REDIS_DIR = LOCAL / "redis"
PG_DIR = LOCAL / "pg"
PG_LOG = LOCAL / "pg.log"
HONCHO_PID = LOCAL / "honcho.pid"

DEFAULTS = {
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "DATABASE_URL": "postgresql://127.0.0.1:5432/portfolio_sync",
    "PORT": "8050",
}


class DevError(Exception):
    """A step cannot go on; the message says what to do.  ``./dev`` prints it and exits 1."""


def say(text: str = "") -> None:
    print(text, flush=True)


def warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def have(command: str) -> bool:
    return shutil.which(command) is not None


def show_tail(path: Path, lines: int = 20) -> None:
    """The last lines of a log, indented, on stderr: what a failed step said."""
    try:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return
    for line in tail:
        warn("    " + line)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stamp_matches(stamp: Path, digest: str) -> bool:
    try:
        return stamp.read_text().strip() == digest
    except OSError:
        return False


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.")


def tcp_open(host: str, port: int) -> bool:
    """Is some TCP server listening on host:port?"""
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=3):
            return True
    except OSError:
        return False


def proc_name(pid: int) -> str:
    """The name (comm) of a live process, or ``""``."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.2)
    return not alive(pid)


def read_pid(path: Path) -> int | None:
    """The pid on the first line of a pid file, or None."""
    try:
        first = path.read_text().splitlines()[0].strip()
        return int(first)
    except (OSError, IndexError, ValueError):
        return None
