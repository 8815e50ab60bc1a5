"""Helpers shared by the benchmark drivers: worker processes, percentiles, RSS, Redis cleanup, JSON out."""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_url() -> str:
    return os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..1) of ``values``; ``None`` if empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def latency_summary(samples_ms: list[float]) -> dict:
    return {"samples": len(samples_ms), "p50_ms": percentile(samples_ms, 0.5), "p95_ms": percentile(samples_ms, 0.95),
            "p99_ms": percentile(samples_ms, 0.99), "max_ms": max(samples_ms) if samples_ms else None,
            "mean_ms": statistics.fmean(samples_ms) if samples_ms else None}


def idle_gap(gap_ms: tuple[float, float]) -> None:
    """Sleep a random idle gap between two latency samples (so a polling consumer backs off, as in real life)."""
    time.sleep(random.uniform(*gap_ms) / 1000)


def parse_gap(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    return float(low), float(high or low)


def emit(result: dict) -> None:
    """The driver's result: one JSON line on stdout (the last line is what run_all reads)."""
    print(json.dumps(result, default=str), flush=True)


class Worker:
    """A ``dramatiq`` command line in its own process group, stopped by its pid."""

    def __init__(self, module: str, *, processes: int, threads: int, env: dict[str, str] | None = None,
                 log_path: Path | None = None, extra_args: tuple[str, ...] = ()):
        self.processes = processes
        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [str(BIN / "dramatiq"), module, "--processes", str(processes), "--threads", str(threads),
             "--worker-shutdown-timeout", "20000", *extra_args],
            cwd=ROOT, env={**os.environ, **(env or {})}, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)

    def children(self) -> list[int]:
        """Pids of the worker processes Dramatiq's main process forked."""
        try:
            return [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        except FileNotFoundError:
            return []

    def wait_children(self, timeout: float = 30) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.children()
            if len(pids) >= self.processes:
                return pids
            if self.proc.poll() is not None:
                raise RuntimeError(f"dramatiq exited with {self.proc.returncode}")
            time.sleep(0.05)
        raise RuntimeError("dramatiq did not fork its worker processes in time")

    def rss_kib(self) -> list[int]:
        """Resident set size of each worker process (KiB)."""
        sizes = []
        for pid in self.children():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        sizes.append(int(line.split()[1]))
            except FileNotFoundError:
                pass
        return sizes

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the worker processes (not the main process)."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.children():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / ticks
            except (FileNotFoundError, IndexError):
                pass
        return total

    def kill9(self) -> None:
        """SIGKILL the whole group: the main process and its workers, as a crashed machine would."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        if self._log is not subprocess.DEVNULL:
            self._log.close()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def server_cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) used so far by every ``postgres`` and ``redis-server`` process of the
    machine: the servers' share of a job, when measured around a run (other users of the same servers
    count too; on a shared machine, read it as an upper bound)."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals = {"postgres": 0.0, "redis-server": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, _, rest = (entry / "stat").read_text().rpartition(")")
            name = head.split("(", 1)[1]
            if name in totals:
                fields = rest.split()
                totals[name] += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError):
            pass
    return totals


def delete_prefix(client, prefix: str) -> int:
    """Delete every Redis key starting with ``prefix`` (a benchmark's own namespace)."""
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start:start + 500])
    return len(keys)


def wallets(n: int, offset: int = 0) -> list[str]:
    return ["0x" + f"{offset + i:040x}" for i in range(n)]
