"""Wake-ups on the real Redis: the broker announces what it enqueues on ``{namespace}:wake:{queue}``,
and an idle consumer waiting on that subscription returns a message as soon as it is enqueued;
without a subscription it still finds messages by polling.  No worker runs here: each test drives
a consumer of the real broker itself."""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from queue import PriorityQueue

import pytest
import redis
from dramatiq.errors import ConnectionClosed
from dramatiq.worker import ConsumerThread

import actors.worker
from actors.redis_backed.wakeup import wake_channel
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

#: The consumers' worker_timeout here: a consumer left to poll would wait up to this long (see ``idle``).
TIMEOUT_MS = 10_000
#: What "promptly" means: a fifth of TIMEOUT_MS, yet far above a wake-up's milliseconds.
PROMPT_S = 2.0


@pytest.fixture(autouse=True)
def _clean(clean_queues):
    yield


def message(queue_name: str = "sync"):
    actor = {"sync": "sync_portfolio", "sync_high": "sync_portfolio_high", "sync_low": "sync_portfolio_low"}
    return actors.worker.broker.get_actor(actor[queue_name]).message(str(uuid.uuid4()))


def channel(queue_name: str) -> str:
    return wake_channel(actors.worker.broker.namespace, queue_name)


@pytest.fixture
def wakeups(redis_client):
    """A subscription of the test to the wake-ups of the run's queues; ``get(timeout)`` returns the next
    channel woken up (``None`` after ``timeout``)."""
    pubsub = redis_client.pubsub()
    pubsub.psubscribe(channel("*"))
    assert pubsub.get_message(timeout=5)["type"] == "psubscribe"

    class Received:
        @staticmethod
        def get(timeout: float) -> str | None:
            deadline = time.monotonic() + timeout
            while (remaining := deadline - time.monotonic()) > 0:
                got = pubsub.get_message(timeout=remaining)
                if got is not None and got["type"] == "pmessage":
                    return got["channel"].decode()
            return None

    yield Received
    pubsub.close()


def idle(consumer):
    """``consumer`` as after a long idle spell in Dramatiq's polling: its next backoff would be
    5-10 s (``TIMEOUT_MS``), so only a wake-up makes it return within :data:`PROMPT_S`."""
    consumer.misses = 30
    return consumer


def take(consumer, timeout: float):
    """The first message ``consumer`` returns within ``timeout`` seconds (``None`` then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = next(consumer)
        if got is not None:
            return got
    return None


def numsub(redis_client, queue_name: str) -> int:
    return dict(redis_client.pubsub_numsub(channel(queue_name)))[channel(queue_name).encode()]


# --- the publish side -------------------------------------------------------------------------------

def test_enqueue_wakes_up_its_queue(wakeups):
    actors.worker.broker.enqueue(message("sync_high"))
    assert wakeups.get(timeout=5) == channel("sync_high")
    assert wakeups.get(timeout=0.2) is None  # one enqueue, one wake-up


def test_enqueue_batch_wakes_up_each_queue_once_in_its_round_trip(wakeups):
    sent = actors.worker.broker.enqueue_batch([message("sync"), message("sync_low"), message("sync"), message("sync")])

    assert len(sent) == 4 and actors.worker.broker.client.llen(f"{actors.worker.broker.namespace}:sync") == 3
    woken = [wakeups.get(timeout=5), wakeups.get(timeout=5)]
    assert sorted(woken) == [channel("sync"), channel("sync_low")]
    assert wakeups.get(timeout=0.2) is None


def test_a_delayed_message_wakes_up_its_queue_when_it_comes_due(wakeups):
    """Retries go through the delay queue: the delayed enqueue announces nothing (it is not due), and
    when it comes due Dramatiq's delay-queue consumer enqueues it on the real queue, which does."""
    actors.worker.broker.enqueue(message("sync"), delay=100)
    assert wakeups.get(timeout=0.3) is None

    # What the worker's delay-queue consumer thread does with it, run here on the real broker.
    thread = ConsumerThread(broker=actors.worker.broker, queue_name="sync.DQ", prefetch=10, work_queue=PriorityQueue(),
                            worker_timeout=TIMEOUT_MS)
    thread.consumer = actors.worker.broker.consume("sync.DQ", prefetch=10, timeout=TIMEOUT_MS)
    assert thread.consumer.wakeups is None  # a delay queue keeps Dramatiq's backoff
    thread.handle_message(take(thread.consumer, timeout=5))
    time.sleep(0.1)
    thread.handle_delayed_messages()

    assert wakeups.get(timeout=5) == channel("sync")
    assert actors.worker.broker.client.llen(f"{actors.worker.broker.namespace}:sync") == 1
    thread.consumer.close()


def test_a_failed_publish_does_not_fail_the_enqueue(monkeypatch, wakeups):
    def refused(*args, **kwargs):
        raise redis.ResponseError("NOPERM this user has no permissions to access the 'publish' command")

    monkeypatch.setattr(actors.worker.broker.client, "publish", refused)
    sent = actors.worker.broker.enqueue(message("sync"))

    queued = actors.worker.broker.client.lrange(f"{actors.worker.broker.namespace}:sync", 0, -1)
    assert queued == [sent.options["redis_message_id"].encode()]
    assert wakeups.get(timeout=0.2) is None


# --- the consumer side ------------------------------------------------------------------------------

def waiting(consumer) -> queue.Queue:
    """Start taking a message from ``consumer`` in a thread; return once it waits for a wake-up, having
    fetched and found nothing.  The queue returned gets ``(message or None, time.monotonic())``."""
    entered = threading.Event()
    wait = consumer.wakeups.wait

    def spied_wait(timeout_s):
        entered.set()
        return wait(timeout_s)

    consumer.wakeups.wait = spied_wait
    returned: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: returned.put((take(consumer, timeout=30), time.monotonic())), daemon=True).start()
    assert entered.wait(timeout=5), "the consumer never waited for a wake-up"
    time.sleep(0.05)  # into the wait itself; a publish before it would not be missed either (listen() came first)
    return returned


def test_an_idle_consumer_returns_a_message_as_soon_as_it_is_enqueued(redis_client):
    consumer = idle(actors.worker.broker.consume("sync", prefetch=4, timeout=TIMEOUT_MS))
    try:
        returned = waiting(consumer)
        assert numsub(redis_client, "sync") == 1
        enqueued_at = time.monotonic()
        sent = actors.worker.broker.enqueue(message("sync"))

        got, returned_at = returned.get(timeout=30)
        assert got is not None and got.message_id == sent.message_id
        assert returned_at - enqueued_at < PROMPT_S
        consumer.ack(got)
    finally:
        consumer.close()
    wait_until(lambda: numsub(redis_client, "sync") == 0, timeout=5, message="close() left the subscription open")


def test_a_batch_wakes_up_an_idle_consumer():
    consumer = idle(actors.worker.broker.consume("sync_low", prefetch=8, timeout=TIMEOUT_MS))
    try:
        returned = waiting(consumer)
        enqueued_at = time.monotonic()
        sent = actors.worker.broker.enqueue_batch([message("sync_low") for _ in range(3)])

        first, returned_at = returned.get(timeout=30)
        assert first is not None and returned_at - enqueued_at < PROMPT_S
        got = [first, next(consumer), next(consumer)]  # fetched together with the first
        assert sorted(m.message_id for m in got) == sorted(m.message_id for m in sent)
        for proxy in got:
            consumer.ack(proxy)
    finally:
        consumer.close()


def test_a_fetch_that_empties_the_queue_waits_for_a_wake_up_before_fetching_again(monkeypatch):
    """On an idle worker, the fetch right after the one that brought the message came back empty, and
    ran beside that message's lease and start: the consumer waits for the next wake-up instead."""
    consumer = idle(actors.worker.broker.consume("sync", prefetch=4, timeout=TIMEOUT_MS))
    fetches = []
    fetch = actors.worker.broker.do_fetch
    monkeypatch.setattr(actors.worker.broker, "do_fetch", lambda *args: fetches.append(args) or fetch(*args))
    try:
        first = actors.worker.broker.enqueue(message("sync"))
        got = take(consumer, timeout=5)
        assert got is not None and got.message_id == first.message_id and len(fetches) == 1

        returned: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: returned.put((take(consumer, timeout=30), time.monotonic())),
                         daemon=True).start()
        time.sleep(0.3)
        assert len(fetches) == 1, "the consumer fetched again instead of waiting for a wake-up"
        enqueued_at = time.monotonic()
        second = actors.worker.broker.enqueue(message("sync"))

        again, returned_at = returned.get(timeout=30)
        assert again is not None and again.message_id == second.message_id
        assert returned_at - enqueued_at < PROMPT_S and len(fetches) == 2
        consumer.ack(got)
        consumer.ack(again)
    finally:
        consumer.close()


def test_a_consumer_that_cannot_subscribe_polls(monkeypatch, caplog):
    def refused(**kwargs):
        raise redis.ConnectionError("pub/sub refused")

    monkeypatch.setattr(actors.worker.broker.client, "pubsub", refused)
    consumer = actors.worker.broker.consume("sync", prefetch=4, timeout=1000)
    try:
        with caplog.at_level(logging.WARNING, logger="actors.redis_backed.wakeup"):
            assert next(consumer) is None  # nothing there: it backs off, as Dramatiq's consumer does
        assert not consumer.wakeups.subscribed and "Could not subscribe" in caplog.text
        sent = actors.worker.broker.enqueue(message("sync"))

        got = take(consumer, timeout=5)
        assert got is not None and got.message_id == sent.message_id
        consumer.ack(got)
    finally:
        consumer.close()


def test_a_lost_subscription_falls_back_to_polling_and_is_opened_again(redis_client, caplog):
    consumer = idle(actors.worker.broker.consume("sync", prefetch=4, timeout=TIMEOUT_MS))
    consumer.wakeups.retry_after_s = 0.5
    try:
        assert consumer.wakeups.listen() and numsub(redis_client, "sync") == 1

        def broken(**kwargs):
            raise redis.ConnectionError("Connection closed by server.")

        consumer.wakeups._pubsub.get_message = broken
        consumer.misses = 0  # polling from here: short backoffs
        with caplog.at_level(logging.WARNING, logger="actors.redis_backed.wakeup"):
            assert next(consumer) is None
        assert not consumer.wakeups.subscribed and "Lost the subscription" in caplog.text
        assert numsub(redis_client, "sync") == 0  # closed, not left behind

        sent = actors.worker.broker.enqueue(message("sync"))
        got = take(consumer, timeout=5)  # within retry_after_s: found by polling
        assert got is not None and got.message_id == sent.message_id
        consumer.ack(got)

        time.sleep(0.5)  # retry_after_s: the next look subscribes again, and waits for wake-ups
        idle(consumer)
        returned = waiting(consumer)
        assert consumer.wakeups.subscribed and numsub(redis_client, "sync") == 1
        enqueued_at = time.monotonic()
        sent = actors.worker.broker.enqueue(message("sync"))
        got, returned_at = returned.get(timeout=30)
        assert got is not None and got.message_id == sent.message_id and returned_at - enqueued_at < PROMPT_S
        consumer.ack(got)
    finally:
        consumer.close()


@pytest.mark.parametrize("error", [redis.ConnectionError, redis.TimeoutError])
def test_a_redis_error_in_a_fetch_is_a_closed_connection_for_dramatiq(error):
    """Dramatiq's consumer thread restarts a consumer on ConnectionClosed; any other error it logs as a bug."""
    consumer = actors.worker.broker.consume("sync", prefetch=4, timeout=TIMEOUT_MS)

    def down(*args):
        raise error("Redis is away")

    actors.worker.broker.do_fetch = down  # an instance attribute in front of RedisBroker's __getattr__
    try:
        with pytest.raises(ConnectionClosed):
            next(consumer)
    finally:
        del actors.worker.broker.do_fetch
        consumer.close()
