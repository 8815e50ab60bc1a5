"""Redis and PostgreSQL servers of a test's own, from the installed binaries, on 127.0.0.1.

Each listens on a free port, keeps its files in a directory the test gives it,
and is stopped (or killed, or restarted) by its pid.  The fault tests and the
chaos benchmark use them to take a server away for real.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .ports import free_port


def _wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


class RedisServer:
    """``redis-server`` with AOF on (``appendfsync always``): what it acknowledged survives a kill."""

    def __init__(self, directory: Path, *, port: int | None = None):
        self.directory = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no"],
            stdout=open(self.directory / "redis.log", "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _wait_for_port(self.port, 15, self.proc)
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to write anything more (AOF already has every acknowledged write)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _postgres_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql")


class PostgresServer:
    """A throwaway PostgreSQL cluster with trust auth on loopback.

    initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` system user
    (as Debian's own clusters do), with a superuser role named after the current user.  That user
    cannot reach the test's ``directory`` (pytest's ``/tmp/pytest-of-root`` and ``mkdtemp``
    directories are 0700, root's), so the cluster then lives in a directory of its own under the
    system temp directory (``cluster_dir``), which :meth:`cleanup` removes.
    """

    def __init__(self, directory: Path, *, port: int | None = None, settings: dict[str, str] | None = None):
        self.directory = directory
        #: Server settings (``-c NAME=VALUE``) besides the defaults, e.g. a preloaded library.
        self.settings = dict(settings or {})
        self.port = port or free_port()
        self.bindir = _postgres_bindir()
        self.proc: subprocess.Popen | None = None
        self._owner = "postgres" if os.geteuid() == 0 else None
        self.role = pwd.getpwuid(os.geteuid()).pw_name
        self.cluster_dir: Path = directory

    def _run_as_owner(self, args: list[str], **kwargs) -> list[str]:
        return ["runuser", "-u", self._owner, "--", *args] if self._owner else args

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.role}@127.0.0.1:{self.port}/{database}"

    def init(self) -> "PostgresServer":
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._owner:
            # /tmp is world-traversable; the new directory is 0700 and handed to the owner.
            self.cluster_dir = Path(tempfile.mkdtemp(prefix="portfolio-sync-pg-"))
            shutil.chown(self.cluster_dir, self._owner, self._owner)
            (self.directory / "cluster_dir").write_text(str(self.cluster_dir))
        subprocess.run(self._run_as_owner([str(self.bindir / "initdb"), "-D", str(self.cluster_dir / "data"),
                                           "-A", "trust", "-U", self._owner or self.role, "--no-sync"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        self.start()
        if self._owner and self.role != self._owner:
            subprocess.run(self._run_as_owner([str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                                               "-U", self._owner, "-d", "postgres", "-c",
                                               f'CREATE ROLE "{self.role}" SUPERUSER LOGIN']),
                           check=True, stdout=subprocess.DEVNULL, timeout=30)
        return self

    def start(self) -> "PostgresServer":
        self.proc = subprocess.Popen(
            self._run_as_owner([str(self.bindir / "postgres"), "-D", str(self.cluster_dir / "data"),
                                "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
                                "-c", f"unix_socket_directories={self.cluster_dir}", "-c", "fsync=off",
                                "-c", "max_connections=200",
                                *(arg for name, value in self.settings.items() for arg in ("-c", f"{name}={value}"))]),
            stdout=open("/dev/null", "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _wait_for_port(self.port, 30, self.proc)
        time.sleep(0.3)  # listening is not quite accepting: let the startup finish
        return self

    @property
    def server_pid(self) -> int | None:
        """The postmaster's own pid (under runuser, ``self.proc`` is runuser's), from its pid file."""
        try:
            return int((self.cluster_dir / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster): connections are cut, as when a database fails over."""
        if self.proc and self.proc.poll() is None:
            pid = self.server_pid
            if pid:
                os.kill(pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                if pid:
                    os.kill(pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait(10)

    def cleanup(self) -> None:
        """Stop the server and remove its cluster, if it lives outside ``directory``."""
        self.stop()
        if self.cluster_dir != self.directory:
            shutil.rmtree(self.cluster_dir, ignore_errors=True)
