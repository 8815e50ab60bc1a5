"""``./dev down``: stop what ``./dev`` started (found through its pid files), never a server it found running."""

from __future__ import annotations

import os
import signal

from .common import HONCHO_PID, PG_DIR, REDIS_DIR, proc_cmdline, proc_name, read_pid, say, wait_gone, warn


def _stop(label: str, pid: int, signum: int, seconds: float) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
    if wait_gone(pid, seconds):
        say(f"{label}: stopped (pid {pid})")
    else:
        warn(f"{label}: pid {pid} did not stop")


def down() -> int:
    stopped = False
    pid = read_pid(HONCHO_PID)
    if pid and "honcho" in proc_cmdline(pid):
        _stop("honcho", pid, signal.SIGTERM, 20)
        stopped = True
    HONCHO_PID.unlink(missing_ok=True)

    pid = read_pid(REDIS_DIR / "redis.pid")
    if pid and proc_name(pid).startswith("redis-server"):
        _stop("redis", pid, signal.SIGTERM, 30)
        stopped = True
    else:
        (REDIS_DIR / "redis.pid").unlink(missing_ok=True)

    pid = read_pid(PG_DIR / "postmaster.pid")
    if pid and proc_name(pid).startswith("postgres"):
        # SIGINT is PostgreSQL's "fast" shutdown (what pg_ctl stop -m fast sends).
        _stop("postgres", pid, signal.SIGINT, 60)
        stopped = True
    if stopped:
        say("down: stopped what ./dev started; data stays in .local (rm -rf .local to reset)")
    else:
        say("down: nothing started by ./dev is running (services ./dev did not start are left alone)")
    return 0
