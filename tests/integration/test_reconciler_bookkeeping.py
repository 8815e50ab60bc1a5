"""The reconciler's record of messages held unrun by live workers, on the real Redis and PostgreSQL
(issue 14, item 5): kept per message, so a retry freshly prefetched is not taken for a stranded one;
pruned as soon as a message leaves the in-flight sets, so it stays as small as the workers' prefetch.

A live worker holding a message is what Dramatiq's Redis broker records for it: the worker's heartbeat,
its in-flight ("acks") set holding the message's id, the message in its queue's message table."""

from __future__ import annotations

import time
import uuid

import pytest

import actors
import actors.worker
from actors.services import reconciler

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _clean(clean_queues):
    yield


class Clock:
    """The reconciler's ``time`` module, with a clock the test moves."""

    def __init__(self):
        self.now = time.time()

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(reconciler, "time", fake)
    return fake


class Worker:
    """A live worker (as the broker sees one) holding messages of the ``sync`` queue unrun."""

    def __init__(self, redis_client, clock):
        self.redis, self.clock = redis_client, clock
        self.ns, self.id = actors.worker.broker.namespace, f"test-worker-{uuid.uuid4().hex[:8]}"

    def beat(self) -> None:
        self.redis.zadd(f"{self.ns}:__heartbeats__", {self.id: int(self.clock.now * 1000)})

    def hold(self, redis_id: str) -> None:
        self.redis.hset(f"{self.ns}:sync.msgs", redis_id, b"{}")
        self.redis.sadd(f"{self.ns}:__acks__.{self.id}.sync", redis_id)

    def ack(self, redis_id: str) -> None:
        self.redis.hdel(f"{self.ns}:sync.msgs", redis_id)
        self.redis.srem(f"{self.ns}:__acks__.{self.id}.sync", redis_id)

    def stop(self) -> None:
        self.redis.zrem(f"{self.ns}:__heartbeats__", self.id)
        self.redis.delete(f"{self.ns}:__acks__.{self.id}.sync")


@pytest.fixture
def worker(redis_client, clock):
    held = Worker(redis_client, clock)
    held.beat()
    yield held
    held.stop()


def _retrying(db_conn, op_id: str) -> str:
    """Make ``op_id`` an operation between two attempts (its first attempt a minute ago); its message's id."""
    return db_conn.execute("UPDATE sync_operations SET status = 'retrying', attempts = 1, "
                           "started_at = now() - interval '1 minute' WHERE id = %s RETURNING message_id",
                           (op_id,)).fetchone()["message_id"]


def _stranded_hash(redis_client) -> dict[str, float]:
    key = f"{actors.worker.broker.namespace}:reconciler:stranded"
    return {k.decode(): float(v) for k, v in redis_client.hgetall(key).items()}


def _limit_s() -> float:
    return actors.worker.cfg.sync.time_limit_ms / 1000 + 30


def test_a_retry_freshly_prefetched_is_not_declared_stranded(user_id, wallet, db_conn, redis_client, clock, worker):
    op_id = actors.request_sync(user_id, wallet, [1])
    first = _retrying(db_conn, op_id)
    redis_client.delete(f"{actors.worker.broker.namespace}:sync")  # fetched: only in the worker's set
    worker.hold(first)
    assert reconciler.reconcile() == {}  # held unrun for a moment: normal

    # Its attempt ran long (and was retried); the retry's message was prefetched just now.
    clock.now += _limit_s() + 5
    worker.beat()
    worker.ack(first)
    retry = str(uuid.uuid4())
    redis_client.set(reconciler.message_key(actors.worker.broker.namespace, op_id), retry)
    worker.hold(retry)

    assert reconciler.reconcile() == {}
    assert db_conn.execute("SELECT status, requeues FROM sync_operations WHERE id = %s", (op_id,)).fetchone() \
        == {"status": "retrying", "requeues": 0}
    assert set(_stranded_hash(redis_client)) == {retry}

    # The retry itself held unrun past an attempt's time is stranded: it is sent again, once.
    clock.now += _limit_s() + 5
    worker.beat()
    assert reconciler.reconcile() == {"requeued": 1}
    assert db_conn.execute("SELECT requeues FROM sync_operations WHERE id = %s", (op_id,)).fetchone()["requeues"] == 1
    assert _stranded_hash(redis_client) == {}


def test_entries_go_when_their_messages_are_run_so_the_record_stays_bounded(user_id, wallet, db_conn,
                                                                           redis_client, clock, worker):
    ids = []
    for i in range(20):
        op_id = actors.request_sync(f"{user_id}-{i}", wallet, [1])
        ids.append(_retrying(db_conn, op_id))
        worker.hold(ids[-1])
    redis_client.delete(f"{actors.worker.broker.namespace}:sync")
    assert reconciler.reconcile() == {}
    assert set(_stranded_hash(redis_client)) == set(ids)

    # Every one of them is run and finished meanwhile.
    for redis_id in ids:
        worker.ack(redis_id)
    db_conn.execute("UPDATE sync_operations SET status = 'succeeded', finished_at = now() WHERE user_id LIKE %s",
                    (f"{user_id}-%",))
    clock.now += 5
    worker.beat()
    reconciler.reconcile()

    assert _stranded_hash(redis_client) == {}
