"""``import actors`` is the producer API and nothing more: in a fresh process it reads no setting,
opens no connection, starts no thread, builds no broker, declares no actor and prints nothing,
whatever the command line; the producer's broker is built on the first call that needs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs in the subprocess: records every socket connection, imports actors, and writes what it saw
# to the file named by argv[-1] (not to stdout or stderr, which must stay empty).
_PROBE = r"""
import socket, sys, threading, json

connections = []
for name in ("connect", "connect_ex"):
    original = getattr(socket.socket, name)
    def record(self, address, _original=original):
        connections.append(repr(address))
        return _original(self, address)
    setattr(socket.socket, name, record)

import actors
import dramatiq.broker

seen = {
    "connections_at_import": list(connections),
    "threads_at_import": sorted(t.name for t in threading.enumerate()),
    "broker_at_import": dramatiq.broker.global_broker is not None,
    "modules": sorted(m for m in ("actors.worker", "actors.middleware", "periodiq", "prometheus_client")
                      if m in sys.modules),
    "api": sorted(actors.__all__),
}
try:
    actors.request_sync("user-1", "0x" + "ab" * 20, [1])
except Exception as exc:
    seen["first_call"] = f"{type(exc).__name__}: {exc}"
broker = dramatiq.broker.global_broker
seen["connections_after_first_call"] = len(connections)
seen["broker_after_first_call"] = type(broker).__name__
seen["actors_declared"] = sorted(broker.actors) if broker else None
seen["middleware"] = [type(m).__name__ for m in broker.middleware] if broker else None
with open(sys.argv[-1], "w") as out:
    json.dump(seen, out)
"""


def probe(tmp_path: Path, **env: str) -> dict:
    """Run the probe in a fresh interpreter with ``env`` added; what it saw."""
    report = tmp_path / "seen.json"
    # The CLI's arguments on the command line: importing actors once took them as its own, and exited.
    done = subprocess.run([sys.executable, "-c", _PROBE, "--help", "sync", str(report)], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    return json.loads(report.read_text())


def test_import_actors_starts_nothing_and_builds_the_producer_broker_on_first_use(tmp_path):
    # Nothing listens on port 1: a connection attempt is refused at once, and recorded by the probe.
    seen = probe(tmp_path, REDIS_URL="redis://127.0.0.1:1/0", DATABASE_URL="postgresql://127.0.0.1:1/none",
                 REDIS_TIMEOUT_S="1")
    assert seen["connections_at_import"] == []
    assert seen["threads_at_import"] == ["MainThread"]
    assert seen["broker_at_import"] is False
    assert seen["modules"] == []  # neither the worker, its middleware, periodiq nor prometheus_client
    assert seen["api"] == ["InvalidSyncRequest", "SyncAttemptFailed", "SyncUnavailable", "get_portfolio", "get_sync",
                           "pause_wallet", "portfolio_as_json", "request_sync", "request_syncs", "resume_wallet",
                           "track_wallet", "untrack_wallet"]
    # The first request builds the producer's broker (no middleware, no actor) and reaches for Redis.
    assert seen["first_call"].startswith("SyncUnavailable: Redis did not accept the request(s)")
    assert seen["connections_after_first_call"] >= 1
    assert (seen["broker_after_first_call"], seen["actors_declared"], seen["middleware"]) == ("SyncBroker", [], [])


def test_import_actors_reads_no_setting(tmp_path):
    """A bad variable does not stop the import: it is reported by the first call that needs the settings."""
    seen = probe(tmp_path, SYNC_CHAINS="ethereum")
    assert (seen["connections_at_import"], seen["broker_at_import"]) == ([], False)
    assert seen["first_call"].startswith("ConfigError: ") and "SYNC_CHAINS" in seen["first_call"]
    assert (seen["connections_after_first_call"], seen["broker_after_first_call"]) == (0, "NoneType")
