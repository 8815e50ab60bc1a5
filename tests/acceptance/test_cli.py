"""``portfolio-sync``, the command line, through its real console script (``.venv/bin/portfolio-sync``)
as a separate process with the run's environment, against real workers, Redis and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import actors
import actors.worker
from actors.redis_backed.inspection import queue_states
from tests.processes import ROOT
from tests.waiting import wait_for, wait_until

pytestmark = pytest.mark.acceptance

SCRIPT = Path(sys.executable).parent / "portfolio-sync"


def cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
        timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], cwd=ROOT, env={**os.environ, **(env or {})}, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_count(queue: str = "sync") -> int:
    return next(q.dead for q in queue_states(actors.worker.broker) if q.queue == queue)


def test_request_wait_show_wallet_and_events(start_worker, user_id, wallet):
    start_worker()
    done = cli("request", user_id, wallet, "--chains", "1,10", "--priority", "high", "--wait", "--timeout", "30")
    assert done.returncode == 0, done.stderr
    op_id = done.stdout.strip()
    assert str(uuid.UUID(op_id)) == op_id
    assert f"{op_id}: succeeded" in done.stderr  # progress on stderr

    shown = cli("show", op_id, "--json")
    assert shown.returncode == 0
    record = json.loads(shown.stdout)
    assert record["status"] == "succeeded" and record["trigger"] == "cli" and record["priority"] == "high"
    assert record["chain_ids"] == [1, 10] and record["total_value_usd"]
    text = cli("show", op_id).stdout
    assert "status" in text and "succeeded" in text and "CHAIN" in text

    again = cli("request", user_id, wallet, "--chains", "1,10")
    assert again.returncode == 0 and again.stdout.strip() == op_id and "cooldown" in again.stderr

    listed = cli("wallet", wallet, "--user", user_id)
    assert listed.returncode == 0 and op_id in listed.stdout and "succeeded" in listed.stdout
    assert [r["id"] for r in json.loads(cli("wallet", wallet.upper().replace("0X", "0x"), "--json").stdout)] == [op_id]

    streamed = [json.loads(line) for line in cli("events", "--count", "10000").stdout.splitlines()]
    mine = [e["type"] for e in streamed if e["operation_id"] == op_id]
    assert mine == ["sync.succeeded", "portfolio.updated"]


def test_request_batch_from_stdin_validates_everything_first_and_shows_progress(clean_queues, user_id):
    wallets = ["0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8] for _ in range(3)]
    rows = (f"user_id,wallet_address,chain_ids,priority\n{user_id},{wallets[0]},1;10,high\n"
            f"{user_id},{wallets[1]},,\n{user_id},{wallets[2]},8453,low\n")
    done = cli("request-batch", "-", "--batch-size", "2", stdin=rows)
    assert done.returncode == 0, done.stderr
    out = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["wallet_address"] for r in out] == wallets
    ops = [actors.get_sync(r["operation_id"]) for r in out]
    assert [(o["chain_ids"], o["priority"], o["trigger"]) for o in ops] == [
        ([1, 10], "high", "cli"), ([1, 10, 137, 8453, 42161], "normal", "cli"), ([8453], "low", "cli")]
    assert "requested 2/3" in done.stderr and "requested 3/3" in done.stderr

    bad = cli("request-batch", "-", stdin=f"{user_id}-2,{wallets[0]}\n{user_id}-2,0xnope\n{user_id}-2,{wallets[1]},999\n")
    assert bad.returncode == 2
    assert "line 2: wallet_address must be" in bad.stderr and "line 3: unknown chain id 999" in bad.stderr
    assert "nothing was requested" in bad.stderr and bad.stdout == ""
    assert sum(q.waiting for q in queue_states(actors.worker.broker)) == 3  # only the first file's


def test_status_dead_letters_and_redrive(start_worker, user_id, wallet):
    # The worker knows only chain 1: a sync of chain 137 fails at once and is dead-lettered.
    start_worker(env={"SYNC_CHAINS": "1"})
    failed = cli("request", user_id, wallet, "--chains", "137", "--wait", "--timeout", "30")
    assert failed.returncode == 1 and "failed: unsupported_chain" in failed.stderr
    op_id = failed.stdout.strip()
    wait_for(op_id)
    wait_until(lambda: dead_count() >= 1, 10, "the failed message was not dead-lettered")

    status = json.loads(cli("status", "--json").stdout)
    assert {q["queue"] for q in status["queues"]} >= {"sync_high", "sync", "sync_low", "periodic"}
    assert next(q for q in status["queues"] if q["queue"] == "sync")["dead"] >= 1
    assert status["broker_processes"]["alive"] >= 1 and status["quarantined"] == 0
    assert "WAITING" in cli("status").stdout

    listed = json.loads(cli("dead-letters", "list", "--wallet", wallet, "--json").stdout)
    assert listed["total"] == 1
    letter = listed["dead_letters"][0]
    assert letter["operation_id"] == op_id and letter["error_code"] == "unsupported_chain"
    ref = f"{letter['queue']}:{letter['redis_id']}"

    dry = cli("dead-letters", "redrive", "--wallet", wallet, "--dry-run")
    assert dry.returncode == 0 and dry.stdout.strip() == ref and "nothing was changed" in dry.stderr
    assert dead_count() >= 1
    assert cli("dead-letters", "redrive").returncode == 2  # neither refs nor a selection

    redriven = cli("dead-letters", "redrive", ref)
    assert redriven.returncode == 0, redriven.stderr
    assert ref in redriven.stdout and "new operation" in redriven.stdout and "1 re-driven, 0 skipped" in redriven.stderr
    new_id = redriven.stdout.split()[-1]
    assert new_id != op_id and actors.get_sync(new_id)["trigger"] == "redrive"
    gone = cli("dead-letters", "redrive", ref)
    assert gone.returncode == 3 and "not in the dead-letter queue" in gone.stderr


def test_demo_requests_the_demo_syncs_and_waits_until_they_are_final(start_worker):
    start_worker()
    done = cli("demo", "--wait", "--timeout", "60")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    requested = [line.split()[1] for line in lines if line.startswith("requested ")]
    final = {line.split()[1]: line.split()[0] for line in lines if line.split()[0] in ("succeeded", "failed")}
    assert len(requested) == 3 and set(final) == set(requested), done.stdout
    assert {actors.get_sync(op_id)["trigger"] for op_id in requested} == {"demo"}
    assert [actors.get_sync(op_id)["status"] for op_id in requested] == [final[op_id] for op_id in requested]


def test_tracking_commands(database, user_id, wallet):
    tracked = cli("track", user_id, wallet, "--chains", "1,10", "--json")
    assert tracked.returncode == 0, tracked.stderr
    assert json.loads(tracked.stdout)["chain_ids"] == [1, 10]
    assert cli("pause", user_id, wallet).returncode == 0
    assert cli("resume", user_id, wallet).stdout.startswith("resumed")
    assert cli("untrack", user_id, wallet).returncode == 0
    again = cli("untrack", user_id, wallet)
    assert again.returncode == 3 and "is not tracked" in again.stderr
    assert cli("track", user_id, "0x123").returncode == 2


def test_exit_codes_and_messages_fit_scripts(database, redis_client):
    missing = cli("show", str(uuid.uuid4()))
    assert missing.returncode == 3 and missing.stdout == "" and "no operation" in missing.stderr
    assert cli("show", "not-a-uuid").returncode == 2
    config = cli("status", env={"SYNC_CHAINS": "1,eth"})
    assert config.returncode == 2 and config.stderr.strip() == "configuration error: SYNC_CHAINS: 'eth' is not a chain id"
    assert cli("bogus").returncode == 2
    helped = cli("dead-letters", "redrive", "--help", env={"SYNC_CHAINS": "1,eth"})  # help needs no configuration
    assert helped.returncode == 0 and "--dry-run" in helped.stdout

    port = closed_port()
    redis_down = cli("status", env={"REDIS_URL": f"redis://:redis-Secret-1@127.0.0.1:{port}/0", "REDIS_TIMEOUT_S": "1"})
    assert redis_down.returncode == 4 and redis_down.stderr.startswith("unavailable:")
    pg_down = cli("show", str(uuid.uuid4()), env={"DATABASE_URL": f"postgresql://app:pg-Secret-2@127.0.0.1:{port}/x",
                                                  "DB_CONNECT_TIMEOUT_S": "1"})
    assert pg_down.returncode == 4 and pg_down.stderr.startswith("unavailable:")
    for result in (redis_down, pg_down):
        assert "Secret" not in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_migrate_applies_the_schema(database):
    done = cli("migrate")
    assert done.returncode == 0 and done.stdout.startswith("schema applied to postgresql://")
