"""A consumer given up for a new one, on the real Redis: what it had fetched and not handed out stays in
this live worker's in-flight set, and the consumer that replaces it puts exactly that back in the queue, so
it runs at once instead of waiting for the reconciler.  The tests drive the real broker's consumers, by
hand or in Dramatiq's own consumer thread; no worker runs."""

from __future__ import annotations

import threading
import time
import uuid
from queue import PriorityQueue

import dramatiq.worker
import pytest
import redis
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message
from dramatiq.worker import ConsumerThread

import actors.worker
from actors.redis_backed.inspection import in_flight_key
from actors.redis_backed.wakeup import wake_channel
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

TIMEOUT_MS = 1000


@pytest.fixture(autouse=True)
def _clean(clean_queues):
    yield


@pytest.fixture
def broker():
    return actors.worker.broker


def send(broker, n: int, *, delay: int | None = None) -> list[str]:
    """The Redis ids of ``n`` messages enqueued on ``sync`` (its delay queue with ``delay``)."""
    return redis_ids(send_messages(broker, n, delay=delay))


def send_messages(broker, n: int, *, delay: int | None = None) -> list[Message]:
    actor = broker.get_actor("sync_portfolio")
    return [broker.enqueue(actor.message(str(uuid.uuid4())), delay=delay) for _ in range(n)]


def drain(consumer, n: int, timeout: float = 10.0) -> list:
    """The first ``n`` messages ``consumer`` hands out, and whatever else it hands out until it finds none."""
    got, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = next(consumer)
        if message is None and len(got) >= n:
            return got
        if message is not None:
            got.append(message)
    raise AssertionError(f"{len(got)} of {n} messages handed out in {timeout} s")


def redis_ids(messages) -> list[str]:
    return [m.options["redis_message_id"] for m in messages]


def in_flight(broker, redis_client, queue_name: str) -> set[str]:
    return {m.decode() for m in redis_client.smembers(in_flight_key(broker.namespace, broker.broker_id, queue_name))}


def test_the_next_consumer_puts_back_what_a_lost_one_dropped(broker, redis_client, monkeypatch):
    sent = send(broker, 6)
    lost = broker.consume("sync", prefetch=3, timeout=TIMEOUT_MS)
    running = next(lost)  # handed to the worker: fetched three, two left in the consumer's cache
    # Dramatiq gives it up, cache and all, on a lost connection: its own give-back at close cannot reach Redis.
    with monkeypatch.context() as cut:
        cut.setattr(broker, "do_requeue", lambda *_: (_ for _ in ()).throw(redis.ConnectionError("gone")))
        lost.close()
    broker.do_fetch("sync", 1)  # a fetch Redis ran, whose answer a lost connection never brought
    assert len(in_flight(broker, redis_client, "sync")) == 4

    new = broker.consume("sync", prefetch=10, timeout=TIMEOUT_MS)
    got = drain(new, 5)

    # the three dropped and the two never fetched, each once; not the one the worker runs
    assert sorted(redis_ids(got)) == sorted(set(sent) - {running.options["redis_message_id"]})
    for message in [running, *got]:
        new.ack(message)
    assert in_flight(broker, redis_client, "sync") == set() and broker.held("sync") == set()


@pytest.fixture
def consumer_thread(broker, monkeypatch):
    """Start Dramatiq's consumer thread on a queue of the real broker, restarting its consumer 0.1 s after
    an error (3 s in Dramatiq); it is stopped at the end of the test."""
    monkeypatch.setattr(dramatiq.worker, "CONSUMER_RESTART_DELAY_SECS", 0.1)
    started = []

    def start(queue_name: str, prefetch: int) -> ConsumerThread:
        thread = ConsumerThread(broker=broker, queue_name=queue_name, prefetch=prefetch, work_queue=PriorityQueue(),
                                worker_timeout=TIMEOUT_MS)
        thread.start()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        thread.stop()
        thread.join(5)


def answer_lost_once(broker, monkeypatch, *, applied: bool) -> threading.Event:
    """The broker's next fetch loses its connection, after Redis ran it (``applied``) or before; the event
    is set once it has."""
    real, failed = broker.do_fetch, threading.Event()

    def fetch(queue_name, count):
        if failed.is_set():
            return real(queue_name, count)
        if applied:
            real(queue_name, count)
        failed.set()
        raise redis.ConnectionError("Connection closed by server.")

    monkeypatch.setattr(broker, "do_fetch", fetch)
    return failed


def test_in_dramatiqs_consumer_thread_a_fetch_whose_answer_was_lost_still_reaches_the_worker(
        broker, redis_client, consumer_thread, monkeypatch):
    failed = answer_lost_once(broker, monkeypatch, applied=True)
    sent = send(broker, 4)
    thread = consumer_thread("sync", prefetch=10)

    wait_until(lambda: thread.work_queue.qsize() == 4, 10, "the messages did not reach the work queue")
    assert failed.is_set()
    assert sorted(redis_ids(item.message for item in list(thread.work_queue.queue))) == sorted(sent)


def test_in_dramatiqs_consumer_thread_delayed_messages_outlive_a_lost_connection(
        broker, redis_client, consumer_thread, monkeypatch):
    """The thread holds delayed messages until they are due and drops them with a lost consumer: they come
    back, and reach their queue when due."""
    sent = send_messages(broker, 2, delay=1500)
    thread = consumer_thread("sync.DQ", prefetch=10)
    wait_until(lambda: thread.delay_queue.qsize() == 2, 10, "the delayed messages were not taken")
    failed = answer_lost_once(broker, monkeypatch, applied=False)

    wait_until(failed.is_set, 10, "the consumer did not fetch again")
    wait_until(lambda: redis_client.llen(f"{broker.namespace}:sync") == 2, 10, "the delayed messages were lost")
    # moved to their queue as new messages (new Redis ids) of the same Dramatiq message ids
    moved = redis_client.hmget(f"{broker.namespace}:sync.msgs", redis_client.lrange(f"{broker.namespace}:sync", 0, -1))
    assert sorted(Message.decode(m).message_id for m in moved) == sorted(m.message_id for m in sent)
    wait_until(lambda: in_flight(broker, redis_client, "sync.DQ") == set(), 5, "the delay queue kept them in flight")


def test_a_requeue_settles_what_it_puts_back_even_from_a_generator(broker, redis_client):
    send(broker, 2)
    consumer = broker.consume("sync", prefetch=2, timeout=TIMEOUT_MS)
    handed = drain(consumer, 2)
    assert broker.held("sync") == set(redis_ids(handed))

    consumer.requeue(message for message in handed)  # as Dramatiq's consumer thread passes its delay queue

    assert broker.held("sync") == set() and redis_client.llen(f"{broker.namespace}:sync") == 2



def queue_ids(broker, redis_client, queue_name: str = "sync") -> list[str]:
    """The Redis ids waiting in ``queue_name``, the next to be fetched first."""
    return [m.decode() for m in redis_client.lrange(f"{broker.namespace}:{queue_name}", 0, -1)]


def test_a_closing_consumer_gives_back_what_it_did_not_hand_out_at_the_head_of_the_queue(broker, redis_client):
    first = send(broker, 6)
    closing = broker.consume("sync", prefetch=6, timeout=TIMEOUT_MS)
    ran = next(closing)  # handed to the worker, which ran it; the five others wait in the consumer's cache
    closing.ack(ran)
    later = send(broker, 2)  # enqueued after the first six were fetched
    closing.message_cache[:0] = [b'{"options": {"redis_message_id": []}}',  # bodies naming no usable id
                                 b"[" * 10_000 + b"]" * 10_000]
    wakeups = redis_client.pubsub(ignore_subscribe_messages=True)
    wakeups.subscribe(wake_channel(broker.namespace, "sync"))
    wakeups.get_message(timeout=1)  # the subscription's confirmation: it listens from here on

    closing.close()  # a worker stopping, or replacing a consumer after an error, closes it

    assert queue_ids(broker, redis_client) == [*first[1:], *later]  # in their order, ahead of what came after
    assert in_flight(broker, redis_client, "sync") == set() and broker.held("sync") == set()
    woken = wait_until(lambda: wakeups.get_message(timeout=0.1), 5, "no wake-up published")
    assert woken["data"] == b"1"  # the other workers' idle consumers look at once
    wakeups.close()


def test_a_stopping_worker_gives_back_what_it_handed_out_then_what_it_fetched_in_queue_order(broker, redis_client):
    first = send(broker, 6)
    stopping = broker.consume("sync", prefetch=6, timeout=TIMEOUT_MS)
    handed = [next(stopping), next(stopping)]  # in the worker's work queue, not run; four more in the cache
    later = send(broker, 2)

    # Dramatiq's Worker.stop: it requeues the messages of its work queue, then closes its consumers.
    stopping.requeue(handed)
    assert queue_ids(broker, redis_client) == [*first, *later]
    assert in_flight(broker, redis_client, "sync") == set() and broker.held("sync") == set()
    stopping.close()
    assert queue_ids(broker, redis_client) == [*first, *later]  # nothing twice


def test_a_requeue_that_fails_keeps_the_cache_for_close_and_never_keeps_the_consumer_from_closing(
        broker, redis_client, monkeypatch):
    sent = send(broker, 4)
    consumer = broker.consume("sync", prefetch=4, timeout=TIMEOUT_MS)
    handed = next(consumer)  # three more in the cache
    with monkeypatch.context() as cut:
        cut.setattr(broker, "do_requeue", lambda *_: (_ for _ in ()).throw(redis.ResponseError("READONLY")))
        with pytest.raises(ConnectionClosed):  # what Dramatiq's shutdown and consumer thread go on past
            consumer.requeue([handed])
        consumer.requeue([])  # as Dramatiq's consumer thread does before it closes the consumer: no raise
    consumer.close()  # Redis answers again: the cache comes back, at the head
    assert queue_ids(broker, redis_client) == sent[1:]
    assert in_flight(broker, redis_client, "sync") == {sent[0]}  # for the next consumer, or the reconciler


def test_a_message_whose_body_is_gone_is_not_put_back(broker, redis_client):
    sent = send(broker, 2)
    consumer = broker.consume("sync", prefetch=2, timeout=TIMEOUT_MS)
    drain(consumer, 2)
    redis_client.hdel(f"{broker.namespace}:sync.msgs", sent[0])  # dramatiq issue 266: an id without its body
    assert broker.do_requeue("sync", *sent) == 1
    assert queue_ids(broker, redis_client) == [sent[1]]
    assert in_flight(broker, redis_client, "sync") == set()


def test_a_requeue_leaves_a_message_acked_meanwhile_alone(broker, redis_client):
    sent = send(broker, 2)
    consumer = broker.consume("sync", prefetch=2, timeout=TIMEOUT_MS)
    handed = [next(consumer), next(consumer)]
    consumer.ack(handed[0])
    assert broker.do_requeue("sync", *sent) == 1
    assert queue_ids(broker, redis_client) == [sent[1]]
