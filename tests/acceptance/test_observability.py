"""What a real ``dramatiq`` worker reports: completion events in the Redis Stream, Prometheus
metrics on its metrics server, and JSON log lines carrying each job's ids."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

import actors
import actors.worker
from actors.redis_backed import events
from tests.waiting import wait_for, wait_until

pytestmark = pytest.mark.acceptance


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> str | None:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


def test_a_worker_reports_events_metrics_and_json_logs(start_worker, user_id, wallet, tmp_path, redis_client):
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    stale = metrics_dir / "worker-999999999"  # a run that ended long ago: removed when the server starts
    stale.mkdir(parents=True)
    (stale / "counter_1.db").write_bytes(b"")
    # The worker knows chains 1 and 10 only: a sync of chain 137 fails (unsupported_chain).
    worker = start_worker(env={"METRICS_ENABLED": "true", "METRICS_PORT": str(port), "METRICS_DIR": str(metrics_dir),
                               "SYNC_CHAINS": "1,10", "LOG_FORMAT": "json"})
    ok_id = actors.request_sync(user_id, wallet, [1, 10])
    failed_id = actors.request_sync(f"{user_id}-b", wallet, [137])
    assert wait_for(ok_id)["status"] == "succeeded"
    assert wait_for(failed_id)["status"] == "failed"

    # Completion events: a bounded stream other services read with consumer groups.
    def mine():
        found = [(i, e) for i, e in events.read(redis_client, actors.worker.broker.namespace, count=10_000)
                 if e["operation_id"] in (ok_id, failed_id)]
        return found if len(found) == 3 else None

    found = wait_until(mine, 10, "the completion events did not all arrive")
    by_type = {e["type"]: e for _i, e in found}
    assert set(by_type) == {"sync.succeeded", "portfolio.updated", "sync.failed"}
    succeeded, updated, failed = by_type["sync.succeeded"], by_type["portfolio.updated"], by_type["sync.failed"]
    op = actors.get_sync(ok_id)
    assert succeeded["operation_id"] == ok_id and succeeded["user_id"] == user_id
    assert succeeded["wallet_address"] == wallet.lower() and succeeded["chain_ids"] == "1,10"
    assert succeeded["total_value_usd"] == str(op["total_value_usd"]) == updated["total_value_usd"]
    assert succeeded["holdings_count"] == str(op["holdings_count"]) and succeeded["error_code"] == ""
    assert updated["operation_id"] == ok_id and updated["chain_ids"] == "1,10"
    assert failed["operation_id"] == failed_id and failed["error_code"] == "unsupported_chain"
    failed_op = actors.get_sync(failed_id)
    assert failed["status"] == "failed" and failed["attempts"] == str(failed_op["attempts"])
    assert failed["total_value_usd"] == ("" if failed_op["total_value_usd"] is None else str(failed_op["total_value_usd"]))
    info = redis_client.xinfo_stream(events.stream_key(actors.worker.broker.namespace))
    assert info["length"] >= 3

    # Metrics: Dramatiq's and the project's, from every worker process of the command.
    text = wait_until(lambda: (t := scrape(port)) and "portfolio_sync_syncs_total" in t and t, 15,
                      "the worker's metrics server did not answer")
    assert 'dramatiq_messages_total{actor_name="sync_portfolio",queue_name="sync"}' in text
    assert 'portfolio_sync_syncs_total{priority="normal",status="succeeded",trigger="api"} 1.0' in text
    assert 'portfolio_sync_syncs_total{priority="normal",status="failed",trigger="api"} 1.0' in text
    assert 'portfolio_sync_sync_errors_total{error_code="unsupported_chain"} 1.0' in text
    assert 'portfolio_sync_chain_syncs_total{chain_id="10",status="ok"} 1.0' in text
    assert 'portfolio_sync_provider_calls_total{chain_id="1",provider="simulated",result="ok"} 1.0' in text
    assert 'portfolio_sync_provider_errors_total{chain_id="137",error_code="unsupported_chain",provider="simulated"}' in text
    assert 'portfolio_sync_queue_wait_seconds_count{priority="normal"} 2.0' in text
    assert 'portfolio_sync_events_total{result="written",type="sync.succeeded"} 1.0' in text
    for statement in ("start_attempt", "finish_attempt"):  # two attempts, however they were batched
        assert f'portfolio_sync_audit_batch_size_sum{{statement="{statement}"}} 2.0' in text
    assert 'portfolio_sync_queue_messages{queue="sync",state="dead"}' in text
    assert user_id not in text and wallet.lower() not in text and ok_id not in text
    assert not stale.exists()
    assert [p.name for p in metrics_dir.iterdir()] == [f"worker-{worker.proc.pid}"]

    # Logs: one JSON object per line; a job's lines carry its operation id, message id and attempt.
    time.sleep(0.2)
    lines = [json.loads(line) for line in worker.log.splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    for op_id in (ok_id, failed_id):
        about = [line for line in lines if op_id in line["message"]]
        assert about, f"no log line about {op_id}"
        for line in about:
            assert line["operation_id"] == op_id, line
            assert line["message_id"] and line["attempt"] == 1 and line["actor"] == "sync_portfolio"
