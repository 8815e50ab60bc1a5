"""Workers killed for real, messages corrupted, delivered twice: nothing accepted is lost or doubled.

Each test names the guarantee it shows.  All run real ``dramatiq`` processes on the real Redis and
PostgreSQL; the shortest Redis lease and reconciler interval keep them quick.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
import uuid

import pytest

import actors
import actors.worker
from actors.services import lifecycle
from storage import operations
from tests.waiting import wait_for, wait_until

pytestmark = pytest.mark.acceptance

FAST_RECOVERY = {"SYNC_LEASE_MS": "3000", "RECONCILE_INTERVAL_S": "1", "BROKER_HEARTBEAT_TIMEOUT_MS": "5000"}


def wallets(n: int) -> list[str]:
    return ["0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8] for _ in range(n)]



def test_kill_9_of_a_worker_mid_job_every_operation_completes_elsewhere(start_worker, user_id, capsys):
    """Guarantee: operations in flight on a worker killed with SIGKILL are completed by another worker;
    each restarts once the dead worker's lease lapses, and those it had fetched and not started once its
    heartbeat is old, at the reconciler's next pass (printed: seconds from the kill to each start)."""
    env = {**FAST_RECOVERY, "SIMULATED_LATENCY_MS": "2500"}
    doomed = start_worker(threads=4, env=env)
    ids = actors.request_syncs([{"user_id": user_id, "wallet_address": w, "chain_ids": [1]} for w in wallets(8)])
    victim = doomed.children()[0]
    running = wait_until(lambda: [i for i in ids if actors.get_sync(i)["status"] == "running"
                                  and actors.get_sync(i)["worker_id"].endswith(f":{victim}")],
                         20, "the first worker never ran anything")

    killed_at = dt.datetime.now(dt.timezone.utc)
    doomed.proc.send_signal(signal.SIGKILL)
    os.kill(victim, signal.SIGKILL)
    start_worker(threads=8, env=env)

    final = [wait_for(i, timeout=60) for i in ids]
    assert all(op["status"] == "succeeded" for op in final), [(o["status"], o["error_code"]) for o in final]

    def starts(op_ids):
        return sorted(round((actors.get_sync(i)["started_at"] - killed_at).total_seconds(), 2) for i in op_ids)

    with capsys.disabled():
        print(f"\nkill -9 -> restart of the {len(running)} running operations, seconds: {starts(running)}; start of "
              f"the {len(ids) - len(running)} it had fetched: {starts(set(ids) - set(running))}")
    # The dead worker's fetched messages are back once its heartbeat is 5 s old and a reconciler has reached
    # Redis for as long (Dramatiq's maintenance alone took 9.7 to over 60 s): 15 s is a loaded machine's margin.
    assert max(starts(set(ids) - set(running)), default=0) < 15
    for op_id in running:
        op = actors.get_sync(op_id)
        assert op["attempts"] >= 2 and not op["worker_id"].endswith(f":{victim}")
        assert len(operations.get_holdings(user_id, op["wallet_address"])) == op["holdings_count"]


def test_sigterm_to_the_whole_group_is_graceful(start_worker, user_id):
    """Guarantee: a platform restart (SIGTERM to every process of the group, SIGKILL 30 s later) lets
    running jobs finish and puts the rest back in the queue; none is lost, none is half written."""
    env = {**FAST_RECOVERY, "SIMULATED_LATENCY_MS": "1500"}
    worker = start_worker(threads=2, env=env)
    child = worker.children()[0]
    ids = actors.request_syncs([{"user_id": user_id, "wallet_address": w, "chain_ids": [1]} for w in wallets(10)])
    running = wait_until(lambda: [i for i in ids if actors.get_sync(i)["status"] == "running"], 20, "nothing ran")

    worker.kill_group(signal.SIGTERM)
    try:
        worker.proc.wait(30)
    except Exception:
        worker.kill_group(signal.SIGKILL)
        raise AssertionError("the worker did not stop within the platform's 30 s")
    assert "Killing worker process" not in worker.log
    for op_id in running:  # the jobs running at SIGTERM finished there, in their first attempt
        op = actors.get_sync(op_id)
        assert op["status"] == "succeeded" and op["attempts"] == 1 and op["worker_id"].endswith(f":{child}")

    start_worker(threads=4, env=env)
    final = [wait_for(i, timeout=60) for i in ids]
    assert [op["status"] for op in final] == ["succeeded"] * len(ids)
    assert all(op["attempts"] == 1 for op in final)  # none ran twice


def test_a_worker_never_outlives_its_main_process(start_worker):
    """Guarantee: kill -9 of Dramatiq's main process stops its worker processes too (no orphan keeps
    taking jobs)."""
    worker = start_worker(processes=2, threads=1)
    children = worker.children()
    assert len(children) == 2
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait(10)

    def gone(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split()[2] == "Z"  # a zombie has exited
        except FileNotFoundError:
            return True

    wait_until(lambda: all(gone(pid) for pid in children), 30, f"worker processes {children} outlived their parent")


def test_an_undecodable_message_is_quarantined_and_the_others_flow(start_worker, redis_client, user_id):
    """Guarantee: invalid JSON placed in a queue is moved to the quarantine list with a log line; the
    valid messages fetched with it are processed; the consumer keeps going."""
    ns = actors.worker.broker.namespace
    good = actors.request_syncs([{"user_id": user_id, "wallet_address": w, "chain_ids": [1]} for w in wallets(6)])
    corrupt_id = str(uuid.uuid4())
    redis_client.hset(f"{ns}:sync.msgs", corrupt_id, b'{"this is": not json')
    redis_client.lpush(f"{ns}:sync", corrupt_id)  # fetched first, with the good ones behind it
    before = redis_client.llen(f"{ns}:quarantine")

    worker = start_worker(threads=4)
    final = [wait_for(i, timeout=30) for i in good]

    assert [op["status"] for op in final] == ["succeeded"] * 6
    assert redis_client.llen(f"{ns}:quarantine") == before + 1
    entry = json.loads(redis_client.lindex(f"{ns}:quarantine", 0))
    assert entry["queue"] == "sync" and entry["redis_message_ids"] == [corrupt_id]
    assert entry["body"] == '{"this is": not json'
    assert not redis_client.hexists(f"{ns}:sync.msgs", corrupt_id)
    assert "Quarantined a message from queue 'sync'" in worker.log
    assert worker.alive()
    assert wait_for(actors.request_sync(user_id, wallets(1)[0], [1]), timeout=20)["status"] == "succeeded"


def test_duplicate_and_reordered_deliveries_change_nothing(start_worker, user_id, redis_client):
    """Guarantee: the same message delivered twice, at once or after the operation finished, runs the
    operation once; a retry delivered after a later success does not overwrite newer holdings;
    one audit row per operation id."""
    wallet = wallets(1)[0]
    start_worker(threads=4, env={**FAST_RECOVERY, "SIMULATED_LATENCY_MS": "1000"})
    op_id = actors.request_sync(user_id, wallet, [1, 10])
    actor = actors.worker.broker.get_actor("sync_portfolio")
    # Two more deliveries of the same operation while the first runs.
    wait_until(lambda: actors.get_sync(op_id)["status"] == "running", 20, "never ran")
    actors.worker.broker.enqueue_batch([actor.message(op_id), actor.message(op_id)])
    op = wait_for(op_id, timeout=30)
    time.sleep(2.5)  # let the duplicates be delivered and turned away
    assert op["status"] == "succeeded" and actors.get_sync(op_id)["attempts"] == 1
    holdings = operations.get_holdings(user_id, wallet)

    # Delivered again long after it finished: nothing changes.
    actors.worker.broker.enqueue_batch([actor.message(op_id)])
    time.sleep(2.5)
    assert actors.get_sync(op_id)["attempts"] == 1
    assert operations.get_holdings(user_id, wallet) == holdings

    # A late retry of an older operation, after a newer one succeeded.
    older = str(uuid.uuid4())
    operations.insert_operations([operations.NewOperation(older, user_id, wallet, (1,), "normal", "api")],
                                 provider="simulated")
    newer = actors.request_sync(user_id, wallet, [1], force=True)
    assert wait_for(newer, timeout=30)["status"] == "succeeded"
    newer_rows = {h["token_address"]: h for h in operations.get_holdings(user_id, wallet) if h["chain_id"] == 1}
    # The older operation's read is stale by construction: it is written with an older as_of.
    row = operations.start_attempt(older, worker_id="test", message_id=None)
    stale = lifecycle._attempt(row, deadline=time.monotonic() + 10)
    stale = operations.AttemptOutcome(**{**stale.__dict__, "as_of": stale.as_of - dt.timedelta(minutes=5)})
    assert operations.finish_attempt(older, stale)
    assert {h["token_address"]: h for h in operations.get_holdings(user_id, wallet)
            if h["chain_id"] == 1} == newer_rows
    from storage.pool import get_pool

    with get_pool().connection() as conn:
        counts = conn.execute("SELECT count(*) AS n FROM sync_operations WHERE id = ANY(%s::uuid[])",
                              ([op_id, older, newer],)).fetchone()
    assert counts["n"] == 3


def test_a_failing_chain_opens_its_circuit_instead_of_burning_attempts(start_worker, user_id, tmp_path):
    """Guarantee: when a chain's provider keeps failing, its circuit opens: operations stop spending
    attempts on it, record why (`circuit_open`), and finish once the provider is back."""
    env = {"SIMULATED_FAILURE_RATE": "1", "SIMULATED_LATENCY_MS": "20", "CIRCUIT_MIN_CALLS": "3",
           "CIRCUIT_RESET_S": "4", "SYNC_MAX_ATTEMPTS": "3", "SYNC_RETRY_MIN_BACKOFF_MS": "200"}
    failing = start_worker(threads=2, env=env)
    ids = actors.request_syncs([{"user_id": user_id, "wallet_address": w, "chain_ids": [8453]} for w in wallets(6)])

    def opened() -> list[dict]:
        ops = [actors.get_sync(i) for i in ids]
        return [o for o in ops if o["error_code"] == "circuit_open"] and ops

    ops = wait_until(opened, 30, "the circuit never opened")
    assert any("failed too often (>= 50% of >= 3 calls in 30 s)" in (o["error_message"] or "") for o in ops)
    failing.stop()
    # Turned away by the open circuit, the operations did not use up their attempts.
    assert [o for o in ops if o["status"] == "failed"] == []

    start_worker(threads=4, env={**env, "SIMULATED_FAILURE_RATE": "0"})  # the provider is back
    final = [wait_for(i, timeout=60) for i in ids]
    assert [op["status"] for op in final] == ["succeeded"] * len(ids)
