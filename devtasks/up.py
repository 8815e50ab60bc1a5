"""``./dev up``: the Procfile's processes under honcho (all but ``release``), then the demo syncs, in the foreground."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

from .common import HONCHO_PID, LOGS, ROOT, VENV, VENV_PY, DevError, say, warn
from .urls import ServerUrl

#: What requests a few demo syncs and waits for them to end.
DEMO = ["-m", "cli", "demo", "--wait"]
#: honcho exits with these when it was asked to stop (SIGINT from Ctrl-C, SIGTERM from ./dev down).
STOPPED_CODES = (130, 143, -signal.SIGINT, -signal.SIGTERM)


def procfile_names() -> list[str]:
    """The Procfile's process types in order (honcho's own line syntax)."""
    text = (ROOT / "Procfile").read_text()
    return re.findall(r"^([A-Za-z0-9_-]+):[ \t]*\S.*$", text, flags=re.MULTILINE)


def _tee(source, log_path) -> None:
    """Copy honcho's output to the terminal and the log, line by line."""
    with open(log_path, "ab") as log:
        for line in iter(source.readline, b""):
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()
            log.write(line)
            log.flush()


class Up:
    def __init__(self, redis: ServerUrl, postgres: ServerUrl):
        self.redis, self.postgres = redis, postgres
        self.honcho: subprocess.Popen | None = None
        self.demo: subprocess.Popen | None = None
        self.stopping = False

    def stop_all(self, *_signal) -> None:
        self.stopping = True
        for proc in (self.demo, self.honcho):
            if proc is not None and proc.poll() is None:
                proc.terminate()

    def wait_honcho(self) -> int:
        assert self.honcho is not None
        return self.honcho.wait()

    def run(self) -> int:
        if not (ROOT / "Procfile").is_file():
            raise DevError(f"no Procfile in {ROOT}")
        honcho = VENV / "bin" / "honcho"
        if not os.access(honcho, os.X_OK):
            raise DevError("honcho is missing from .venv (it is in the 'dev' extra of pyproject.toml)")
        # `release` is a one-shot (the platform's release phase: the migration, which ran already);
        # honcho would stop every process when it exits, so it is left out.
        all_names = procfile_names()
        names = [n for n in all_names if n != "release"]
        skipped = " (not 'release': the migration ran already)" if "release" in all_names else ""
        if not names:
            raise DevError("the Procfile names no process to run")
        port = int(os.environ["PORT"])
        base = port
        if "web" in names:
            # honcho gives process type number i the port base + 100*i: make `web` get $PORT.
            base = port - 100 * names.index("web")
            if base <= 0:
                raise DevError(f"PORT={port} is too low for the Procfile's process order")
        log = LOGS / "honcho.log"
        say(f"honcho: starting {' '.join(names)}{skipped}; output also in .local/logs/honcho.log")
        log.write_bytes(b"")
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self.stop_all)
        self.honcho = subprocess.Popen([str(honcho), "start", "-f", str(ROOT / "Procfile"), "-d", str(ROOT),
                                        "-p", str(base), *names], cwd=ROOT, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        tee = threading.Thread(target=_tee, args=(self.honcho.stdout, log), daemon=True, name="honcho-tee")
        tee.start()
        HONCHO_PID.write_text(f"{self.honcho.pid}\n")
        try:
            return self._demo_then_wait(with_web="web" in names)
        finally:
            HONCHO_PID.unlink(missing_ok=True)
            tee.join(timeout=5)

    def _demo_then_wait(self, *, with_web: bool) -> int:
        assert self.honcho is not None
        say(f"demo: python {' '.join(DEMO)}")
        self.demo = subprocess.Popen([str(VENV_PY), *DEMO], cwd=ROOT, stdin=subprocess.DEVNULL)
        while self.demo.poll() is None:
            if self.honcho.poll() is not None and not self.stopping:
                self.demo.terminate()
                warn("dev: honcho stopped while the demo ran; see .local/logs/honcho.log")
                self.stopping = True
            time.sleep(0.3)
        demo_rc, self.demo = self.demo.returncode, None
        if not self.stopping and demo_rc != 0:
            warn(f"dev: the demo failed (exit {demo_rc}); stopping")
            self.stop_all()
            self.wait_honcho()
            return 1
        if self.stopping:
            self.stop_all()
            self.wait_honcho()
            say("dev: stopped (Redis and PostgreSQL keep running; ./dev down stops those ./dev started)")
            return 130

        say()
        say("up: everything is running (Ctrl-C stops the processes)")
        if with_web:
            say(f"  dashboard  http://127.0.0.1:{os.environ['PORT']}")
        say(f"  redis      {self.redis.show}")
        say(f"  postgres   {self.postgres.show}")
        say("  logs       .local/logs/honcho.log (processes), .local/logs/, .local/redis/redis.log, .local/pg.log")
        say()
        rc = self.wait_honcho()
        if self.stopping or rc in STOPPED_CODES:
            say("dev: stopped (Redis and PostgreSQL keep running; ./dev down stops those ./dev started)")
            return 0
        warn(f"dev: honcho exited (status {rc}): a process stopped; see .local/logs/honcho.log")
        return rc if rc > 0 else 1
