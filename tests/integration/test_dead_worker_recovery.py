"""A dead worker's messages come back at the next reconciler pass, on the real Redis and PostgreSQL.

A worker killed with ``kill -9`` leaves what it fetched in its in-flight ("acks") sets.  Dramatiq
recovers them in its maintenance, drawn by chance per broker command and per queue; the reconciler
recovers them on each pass (``SyncBroker.recover_dead_workers``), at the head of their queue, and wakes
the queue's idle consumers."""

from __future__ import annotations

import time
import uuid

import pytest

import actors.worker
from actors.redis_backed.wakeup import wake_channel
from actors.services import reconciler
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _clean(clean_queues):
    yield


class Holder:
    """A worker process, as the broker sees one: a heartbeat, and messages in its in-flight sets."""

    def __init__(self, redis_client, *, silent_ms: int, broker_id: str | None = None):
        broker = actors.worker.broker
        self.redis, self.ns = redis_client, broker.namespace
        self.id = broker_id or f"test-worker-{uuid.uuid4().hex[:8]}"
        self.redis.zadd(f"{self.ns}:__heartbeats__", {self.id: broker.clock.now_ms() - silent_ms})

    def hold(self, queue: str, *, body: bool = True) -> str:
        redis_id = str(uuid.uuid4())
        if body:
            self.redis.hset(f"{self.ns}:{queue}.msgs", redis_id, b"{}")
        self.redis.sadd(self.in_flight(queue), redis_id)
        return redis_id

    def in_flight(self, queue: str) -> str:
        return f"{self.ns}:__acks__.{self.id}.{queue}"


def _queue(redis_client, queue: str) -> list[str]:
    return [m.decode() for m in redis_client.lrange(f"{actors.worker.broker.namespace}:{queue}", 0, -1)]


def test_a_dead_workers_messages_go_back_at_the_head_of_their_queues_and_wake_consumers(redis_client):
    timeout = actors.worker.broker.heartbeat_timeout
    dead = Holder(redis_client, silent_ms=timeout + 1000)
    alive = Holder(redis_client, silent_ms=0)
    waiting = str(uuid.uuid4())  # enqueued after the dead worker fetched its messages
    redis_client.rpush(f"{actors.worker.broker.namespace}:sync", waiting)
    normal = {dead.hold("sync"), dead.hold("sync")}
    high, delayed = dead.hold("sync_high"), dead.hold("sync.DQ")
    acked_meanwhile = dead.hold("sync", body=False)
    kept = alive.hold("sync")
    wake = redis_client.pubsub(ignore_subscribe_messages=True)
    channels = [wake_channel(dead.ns, q) for q in ("sync", "sync_high", "sync_low")]
    wake.subscribe(*channels)
    wait_until(lambda: all(n for _, n in redis_client.pubsub_numsub(*channels)), 5, "not subscribed")

    assert reconciler.reconcile() == {}  # only a caller that has reached Redis long enough recovers
    assert redis_client.scard(dead.in_flight("sync")) == 3
    done = reconciler.reconcile(dead_workers=True)

    assert done == {"recovered": 4}
    assert set(_queue(redis_client, "sync")[:2]) == normal and _queue(redis_client, "sync")[2:] == [waiting]
    assert _queue(redis_client, "sync_high") == [high] and _queue(redis_client, "sync.DQ") == [delayed]
    assert acked_meanwhile not in _queue(redis_client, "sync")
    for queue in ("sync", "sync_high", "sync.DQ"):
        assert not redis_client.exists(dead.in_flight(queue))
    assert redis_client.smembers(alive.in_flight("sync")) == {kept.encode()}  # a live worker's are its own
    woken, deadline = set(), time.monotonic() + 2
    try:
        while time.monotonic() < deadline:  # get_message answers None for a subscription's confirmation too
            if (message := wake.get_message(timeout=0.1)) is not None:
                woken.add(message["channel"].decode())
    finally:
        wake.close()
    assert woken == set(channels[:2])  # sync_low had nothing back
    assert reconciler.reconcile(dead_workers=True) == {}  # nothing twice


def test_the_caller_is_never_taken_for_dead(redis_client):
    """After an outage the caller's own heartbeat is old too; it is beaten before the dead are looked for."""
    broker = actors.worker.broker
    own = Holder(redis_client, silent_ms=broker.heartbeat_timeout + 1000, broker_id=broker.broker_id)
    held = own.hold("sync")

    assert reconciler.reconcile(dead_workers=True) == {}
    assert redis_client.smembers(own.in_flight("sync")) == {held.encode()}
    assert redis_client.zscore(f"{own.ns}:__heartbeats__", own.id) >= broker.clock.now_ms() - 1000
