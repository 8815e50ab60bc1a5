"""Hosts whose clocks disagree: real processes whose wall clock is shifted (``tests.skewed_clock``), their
monotonic clock left alone, as an NTP-disciplined host's would be.

Nothing is discarded for a clock: a read stored by a worker whose clock runs ten minutes fast is replaced
by a later sync on a host whose clock is right, and a producer six seconds behind Redis has its requests
admitted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import actors
from storage import operations
from tests.processes import BIN, CommandProcess, WorkerProcess
from tests.waiting import wait_for

pytestmark = pytest.mark.acceptance

ROOT = Path(__file__).resolve().parents[2]


class SkewedWorker(CommandProcess):
    """``dramatiq actors.worker`` on a host whose wall clock is ``seconds`` off."""

    ready_line = WorkerProcess.ready_line

    def __init__(self, log_path: Path, seconds: float):
        super().__init__([sys.executable, "-m", "tests.skewed_clock", str(seconds), str(BIN / "dramatiq"),
                          "actors.worker", "--processes", "1", "--threads", "4"], log_path)


@pytest.fixture
def skewed_worker(clean_queues, tmp_path):
    started: list[SkewedWorker] = []

    def start(seconds: float) -> SkewedWorker:
        worker = SkewedWorker(tmp_path / f"skewed-{len(started)}.log", seconds)
        started.append(worker)
        return worker.wait_ready()

    yield start
    for worker in started:
        worker.stop()


def snapshot(db_conn, user_id: str, wallet: str) -> dict[int, str]:
    rows = db_conn.execute("SELECT chain_id, operation_id::text AS op FROM wallet_chain_snapshots "
                           "WHERE user_id = %s AND wallet_address = %s", (user_id, wallet.lower())).fetchall()
    return {r["chain_id"]: r["op"] for r in rows}


def test_a_later_sync_replaces_a_read_stored_by_a_worker_ten_minutes_fast(skewed_worker, start_worker, db_conn,
                                                                          user_id, wallet):
    fast = skewed_worker(600)
    first = actors.request_sync(user_id, wallet, [1, 8453])
    assert wait_for(first)["status"] == "succeeded"
    assert snapshot(db_conn, user_id, wallet) == {1: first, 8453: first}
    fast.stop()

    start_worker()  # a host whose clock is right
    second = actors.request_sync(user_id, wallet, [1, 8453], force=True)
    op = wait_for(second)
    assert op["status"] == "succeeded"
    # The later sync's read is the one stored: in the snapshots, and in every holding as readers see it (a
    # holding that did not change keeps its row; its read is the chain's snapshot's: see get_holdings).
    assert snapshot(db_conn, user_id, wallet) == {1: second, 8453: second}
    assert {h["operation_id"] for h in operations.get_holdings(user_id, wallet.lower())} == {second}


def test_a_producer_six_seconds_behind_redis_has_its_requests_admitted(clean_queues, db_conn, user_id):
    wallets = ["0x" + os.urandom(20).hex() for _ in range(3)]
    script = ("import json, sys, actors\n"
              "ids = [actors.request_sync(sys.argv[1], w, [1]) for w in sys.argv[2:]]\n"
              "print(json.dumps(ids))\n")
    done = subprocess.run([sys.executable, "-m", "tests.skewed_clock", "-6", "-c", script, user_id, *wallets],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    ids = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(set(ids)) == 3
    rows = db_conn.execute("SELECT id::text, status FROM sync_operations WHERE id = ANY(%s::uuid[])",
                           (ids,)).fetchall()
    assert {r["id"] for r in rows} == set(ids)
    assert {r["status"] for r in rows} == {"queued"}  # no worker runs in this test


def test_crons_are_evaluated_in_utc_whatever_the_hosts_time_zone(clean_queues):
    script = ("import actors.worker, pendulum\n"
              "print(pendulum.now().utcoffset().total_seconds())\n")
    for zone in ("America/New_York", "Asia/Kolkata"):
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "TZ": zone})
        assert done.returncode == 0, done.stderr[-2000:]
        assert float(done.stdout.strip().splitlines()[-1]) == 0.0, zone
