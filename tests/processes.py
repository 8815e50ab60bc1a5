"""Real processes for acceptance tests: the ``dramatiq`` command line, started and stopped by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


class WorkerProcess:
    """``dramatiq actors`` with the run's environment plus ``env`` overrides, logging to ``log_path``."""

    def __init__(self, log_path: Path, *, processes: int = 1, threads: int = 4, env: dict[str, str] | None = None):
        self.log_path = log_path
        self.processes = processes
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [str(BIN / "dramatiq"), "actors", "--processes", str(processes), "--threads", str(threads)],
            cwd=ROOT, env={**os.environ, **(env or {})}, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> "WorkerProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log.count("Worker process is ready for action") >= self.processes:
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"dramatiq exited with {self.proc.returncode}:\n{self.log[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"dramatiq was not ready within {timeout} s:\n{self.log[-3000:]}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
