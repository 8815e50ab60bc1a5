"""Real processes for acceptance tests: the ``dramatiq`` and ``periodiq`` command lines, started and stopped by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


class CommandProcess:
    """A command of the project (``dramatiq``, ``periodiq``) run from the venv with the run's environment
    plus ``env`` overrides, in a process group of its own, logging to ``log_path``; stopped by its pid."""

    #: What the command says once it is ready, and how many times (see :meth:`wait_ready`).
    ready_line = ""
    ready_count = 1

    def __init__(self, args: list[str], log_path: Path, *, env: dict[str, str] | None = None):
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,  # its own group, as on a platform's dyno
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30):
        name = Path(self.proc.args[0]).name
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log.count(self.ready_line) >= self.ready_count:
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"{name} exited with {self.proc.returncode}:\n{self.log[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"{name} was not ready within {timeout} s:\n{self.log[-3000:]}")

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


class WorkerProcess(CommandProcess):
    """``dramatiq actors.worker`` (the Procfile's ``worker``)."""

    ready_line = "Worker process is ready for action"

    def __init__(self, log_path: Path, *, processes: int = 1, threads: int = 4, env: dict[str, str] | None = None):
        super().__init__([str(BIN / "dramatiq"), "actors.worker", "--processes", str(processes),
                          "--threads", str(threads)], log_path, env=env)
        self.ready_count = processes

    def children(self) -> list[int]:
        """Pids of the worker processes Dramatiq's main process forked."""
        try:
            return [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        except FileNotFoundError:
            return []

    def kill_group(self, signum: int) -> None:
        """Send ``signum`` to every process of the group, as a Heroku-style platform or honcho does."""
        os.killpg(self.proc.pid, signum)


class PeriodiqProcess(CommandProcess):
    """``periodiq actors.worker`` (the Procfile's ``scheduler``)."""

    ready_line = "Registered periodic actors"

    def __init__(self, log_path: Path, *, env: dict[str, str] | None = None):
        super().__init__([str(BIN / "periodiq"), "actors.worker"], log_path, env=env)
