"""The producer side (``actors.request_sync`` / ``get_sync``) in a process of its own, for fault tests.

``actors`` reads its settings once, at import: the test process's own ``actors``
points at the run's main Redis and PostgreSQL.  A fault test that takes a server
of its own away (``tests.servers``) runs its producer here instead, with that
server's URL in the environment.

One-shot command line (prints one JSON document on stdout)::

    python -m tests.producer request --user U --count N [--chains 1,8453] [--priority P] [--force] [--batch]
    python -m tests.producer status ID [ID ...]

Long-lived (one process, so a test can see it reconnect by itself after an outage)::

    with ProducerProcess(env={"REDIS_URL": spare.url}) as producer:
        producer.request("user-1", count=3)     # a list of per-request outcomes
        producer.status([op_id, ...])           # {op_id: record or None}

Every request's outcome is ``{"index", "wallet", "operation_id", "error", "message", "elapsed_s"}``:
``operation_id`` is set when ``request_sync`` returned; ``error`` names the exception class when it
raised (``SyncUnavailable``, ``InvalidSyncRequest``, or anything unexpected), and ``elapsed_s`` is how
long the call took.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def wallet_for(user_id: str, index: int) -> str:
    """A deterministic wallet address per (user, index)."""
    return "0x" + hashlib.sha1(f"{user_id}:{index}".encode()).hexdigest()


# ------------------------------------------------------------------------------ inside the subprocess --

def _request(user_id: str, count: int, *, first: int = 0, chains: list[int] | None = None, priority: str = "normal",
             force: bool = False, batch: bool = False) -> list[dict[str, Any]]:
    import actors

    wallets = [wallet_for(user_id, i) for i in range(first, first + count)]
    if batch:
        started = time.monotonic()
        try:
            ids = actors.request_syncs([{"user_id": user_id, "wallet_address": w, "chain_ids": chains,
                                         "priority": priority, "force": force} for w in wallets])
            error = message = None
        except Exception as exc:  # noqa: BLE001 - reported to the test, which decides
            ids, error, message = [None] * len(wallets), type(exc).__name__, str(exc)
        elapsed = time.monotonic() - started
        return [{"index": first + i, "wallet": w, "operation_id": op_id, "error": error, "message": message,
                 "elapsed_s": elapsed} for i, (w, op_id) in enumerate(zip(wallets, ids))]
    outcomes = []
    for i, wallet in enumerate(wallets):
        started = time.monotonic()
        op_id = error = message = None
        try:
            op_id = actors.request_sync(user_id, wallet, chains, priority=priority, force=force)
        except Exception as exc:  # noqa: BLE001
            error, message = type(exc).__name__, str(exc)
        outcomes.append({"index": first + i, "wallet": wallet, "operation_id": op_id, "error": error,
                         "message": message, "elapsed_s": time.monotonic() - started})
    return outcomes


def _status(operation_ids: list[str]) -> dict[str, Any]:
    import actors

    result: dict[str, Any] = {}
    for op_id in operation_ids:
        try:
            result[op_id] = actors.get_sync(op_id)
        except Exception as exc:  # noqa: BLE001
            result[op_id] = {"error": type(exc).__name__, "message": str(exc)}
    return result


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def _serve() -> int:
    """Answer one JSON command per stdin line with one JSON line on stdout, until EOF."""
    import settings
    from actors import logs

    logs.install(settings.get())  # configured once, up front, as an application using actors does

    print(_dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        name = command.pop("cmd")
        try:
            if name == "request":
                answer: Any = _request(**command)
            elif name == "status":
                answer = _status(command["operation_ids"])
            else:
                answer = {"error": f"unknown command {name!r}"}
        except Exception as exc:  # noqa: BLE001
            answer = {"error": type(exc).__name__, "message": str(exc)}
        print(_dumps(answer), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.producer")
    sub = parser.add_subparsers(dest="command", required=True)
    req = sub.add_parser("request", help="request syncs of COUNT wallets of USER, one call each (or one batch)")
    req.add_argument("--user", required=True)
    req.add_argument("--count", type=int, default=1)
    req.add_argument("--first", type=int, default=0, help="index of the first wallet (see wallet_for)")
    req.add_argument("--chains", type=lambda s: [int(c) for c in s.split(",")], default=None)
    req.add_argument("--priority", default="normal")
    req.add_argument("--force", action="store_true")
    req.add_argument("--batch", action="store_true", help="one request_syncs call for all of them")
    status = sub.add_parser("status", help="get_sync of each operation id")
    status.add_argument("ids", nargs="+")
    sub.add_parser("serve", help="answer JSON commands from stdin, one per line")
    args = parser.parse_args(argv)

    if args.command == "serve":
        return _serve()
    if args.command == "request":
        print(_dumps(_request(args.user, args.count, first=args.first, chains=args.chains, priority=args.priority,
                              force=args.force, batch=args.batch)))
    else:
        print(_dumps(_status(args.ids)))
    return 0


# ------------------------------------------------------------------------------- in the test process --

def _env(env: dict[str, str] | None) -> dict[str, str]:
    return {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}


def run_producer(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    """Run ``python -m tests.producer ARGS`` with the test's environment plus ``env``; its parsed JSON."""
    done = subprocess.run([sys.executable, "-m", "tests.producer", *args], cwd=ROOT, env=_env(env),
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"tests.producer {' '.join(args)} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class ProducerProcess:
    """``python -m tests.producer serve``: one producer process, asked command after command.

    Every answer is awaited at most ``timeout`` seconds: a producer call that hangs fails the test
    (``AssertionError``) instead of hanging it.  Its log (stderr) goes to ``log_path`` if given.
    """

    def __init__(self, *, env: dict[str, str] | None = None, log_path: Path | None = None, ready_timeout: float = 30):
        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.producer", "serve"], cwd=ROOT, env=_env(env),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.proc.stdout, selectors.EVENT_READ)
        self._buffer = b""
        self._read_line(ready_timeout)

    def _read_line(self, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._selector.select(remaining):
                raise AssertionError(f"the producer did not answer within {timeout} s")
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                raise AssertionError(f"the producer exited with {self.proc.wait(5)}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def call(self, command: dict[str, Any], *, timeout: float) -> Any:
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        self.proc.stdin.flush()
        return self._read_line(timeout)

    def request(self, user_id: str, count: int = 1, *, first: int = 0, chains: list[int] | None = None,
                priority: str = "normal", force: bool = False, batch: bool = False,
                timeout: float = 60) -> list[dict[str, Any]]:
        return self.call({"cmd": "request", "user_id": user_id, "count": count, "first": first, "chains": chains,
                          "priority": priority, "force": force, "batch": batch}, timeout=timeout)

    def status(self, operation_ids: list[str], *, timeout: float = 30) -> dict[str, Any]:
        return self.call({"cmd": "status", "operation_ids": list(operation_ids)}, timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        self._selector.close()
        self.proc.stdout.close()
        if self._log is not subprocess.DEVNULL:
            self._log.close()

    def __enter__(self) -> "ProducerProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(main())
