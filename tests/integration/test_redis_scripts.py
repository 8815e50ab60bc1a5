"""actors.redis_backed.scripts: scripts on a pipeline in one round trip, and nothing lost or run twice when
Redis has forgotten them (restarted, or SCRIPT FLUSH)."""

from __future__ import annotations

import uuid

import pytest
import redis

import actors
import actors.worker
from actors.redis_backed import scripts as redis_scripts

pytestmark = pytest.mark.integration


@pytest.fixture
def keys(redis_client):
    prefix = f"{actors.worker.broker.namespace}:scripts-test:{uuid.uuid4().hex[:8]}"
    yield prefix
    redis_client.delete(*[f"{prefix}:{k}" for k in ("count", "plain", "other")])


def _script_exists_calls(redis_client) -> int:
    return redis_client.info("commandstats").get("cmdstat_script|exists", {}).get("calls", 0)


def test_no_extra_round_trip_and_after_a_flush_each_command_runs_exactly_once(redis_client, keys):
    count = redis_client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    for flushed in (False, True):
        if flushed:
            redis_client.script_flush()
        pipe = redis_client.pipeline(transaction=False)
        redis_scripts.queue(pipe, count, keys=[f"{keys}:count"], args=[1])
        pipe.incr(f"{keys}:plain")
        redis_scripts.queue(pipe, count, keys=[f"{keys}:count"], args=[10])
        checks = _script_exists_calls(redis_client)
        results = redis_scripts.execute(pipe)
        assert _script_exists_calls(redis_client) == checks  # redis-py's Script would ask first, every time
        base = 11 if flushed else 0
        assert results == [base + 1, 2 if flushed else 1, base + 11]
    assert int(redis_client.get(f"{keys}:count")) == 22 and int(redis_client.get(f"{keys}:plain")) == 2


def test_errors_come_back_in_place_and_raise_first_error_raises_them(redis_client, keys):
    fail = redis_client.register_script("return redis.error_reply('no good')")
    pipe = redis_client.pipeline(transaction=False)
    pipe.set(f"{keys}:other", "x")
    redis_scripts.queue(pipe, fail, keys=[], args=[])
    results = redis_scripts.execute(pipe)
    assert results[0] is True and "no good" in str(results[1])
    with pytest.raises(Exception, match="no good"):
        redis_scripts.raise_first_error(results)


def test_scripts_flushed_again_between_their_load_and_their_run_are_loaded_again(redis_client, keys, monkeypatch):
    # A text no other test loads, so that Redis does not know it yet.
    count = redis_client.register_script(f"-- {keys}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])")
    real_load, flushes = redis.Redis.script_load, []

    def load_then_flush(client, script):
        sha = real_load(client, script)
        if not flushes:
            flushes.append(sha)
            client.script_flush()  # as a restart or another client would, just after the load
        return sha

    monkeypatch.setattr(redis.Redis, "script_load", load_then_flush)
    pipe = redis_client.pipeline(transaction=False)
    redis_scripts.queue(pipe, count, keys=[f"{keys}:count"], args=[5])
    assert redis_scripts.execute(pipe) == [5] and flushes == [count.sha]
    assert int(redis_client.get(f"{keys}:count")) == 5  # run once


def test_requests_are_admitted_and_enqueued_after_redis_forgot_its_scripts(redis_client, user_id, clean_queues):
    redis_client.script_flush()
    wallets = [f"0x{i:040x}" for i in range(8101, 8104)]
    ids = actors.request_syncs([{"user_id": user_id, "wallet_address": w} for w in wallets])
    assert len(set(ids)) == 3
    assert actors.request_syncs([{"user_id": user_id, "wallet_address": wallets[0]}]) == ids[:1]  # a duplicate
    assert redis_client.llen(f"{actors.worker.broker.namespace}:sync") == 3
