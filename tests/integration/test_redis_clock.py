"""actors.redis_backed.redis_clock against the real Redis: one clock for every host, whatever its own says."""

from __future__ import annotations

import time

import dramatiq.brokers.redis
import pytest

import actors.worker
from actors.redis_backed.redis_clock import RedisClock

pytestmark = pytest.mark.integration


def redis_ms(redis_client) -> float:
    seconds, microseconds = redis_client.time()
    return seconds * 1000 + microseconds / 1000


def test_the_clock_reads_redis_time_whatever_this_hosts_wall_clock_says(redis_client, monkeypatch):
    monkeypatch.setattr(time, "time", lambda real=time.time: real() - 600)  # this host ten minutes behind
    clock = RedisClock(redis_client)
    assert abs(clock.now_ms() - redis_ms(redis_client)) < 500


def test_a_worker_behind_redis_beats_its_heartbeat_on_redis_time(redis_client, monkeypatch):
    """Dramatiq stamped heartbeats with the worker's clock: ten minutes behind, the others' maintenance
    declared it dead (its in-flight messages requeued) at every pass."""
    broker = actors.worker.broker
    real = dramatiq.brokers.redis.current_millis
    monkeypatch.setattr(dramatiq.brokers.redis, "current_millis", lambda: real() - 600_000)
    broker.do_purge(f"clock-test-{broker.broker_id}")  # any dispatch command beats the heartbeat
    score = redis_client.zscore(f"{broker.namespace}:__heartbeats__", broker.broker_id)
    assert abs(score - redis_ms(redis_client)) < 2000
