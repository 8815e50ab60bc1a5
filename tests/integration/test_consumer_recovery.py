"""A consumer given up on a lost connection, on the real Redis: what it had fetched and not handed out
stays in this live worker's in-flight set, and the consumer that replaces it puts exactly that back in
the queue, so it runs at once instead of waiting for the reconciler.  Each test drives the real
broker's consumers itself, as Dramatiq's consumer thread does; no worker runs."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from dramatiq.errors import ConnectionClosed

import actors.worker

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
    actor = broker.get_actor("sync_portfolio")
    return [broker.enqueue(actor.message(str(uuid.uuid4())), delay=delay).options["redis_message_id"]
            for _ in range(n)]


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
    return {m.decode() for m in redis_client.smembers(f"{broker.namespace}:__acks__.{broker.broker_id}.{queue_name}")}


def refused(*_args):
    raise redis.ConnectionError("Connection closed by server.")


def lose(consumer, where: str) -> None:
    """Make ``consumer`` lose its connection, as Dramatiq sees it, as it next hands out a message from its
    cache (``where="check"``) or fetches (``"fetch"``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(consumer if where == "check" else consumer.broker, "check" if where == "check" else "do_fetch",
                      refused)
        with pytest.raises(ConnectionClosed):
            next(consumer)
    consumer.close()


def test_the_next_consumer_puts_back_what_a_lost_one_dropped(broker, redis_client):
    sent = send(broker, 6)
    lost = broker.consume("sync", prefetch=3, timeout=TIMEOUT_MS)
    running = next(lost)  # handed to the worker: fetched three, two left in the consumer's cache
    lose(lost, "check")
    broker.do_fetch("sync", 1)  # a fetch Redis ran, whose answer the lost connection never brought
    assert len(in_flight(broker, redis_client, "sync")) == 4

    new = broker.consume("sync", prefetch=10, timeout=TIMEOUT_MS)
    got = drain(new, 5)

    # the three dropped and the two never fetched, each once; not the one the worker runs
    assert sorted(redis_ids(got)) == sorted(set(sent) - {running.options["redis_message_id"]})
    for message in [running, *got]:
        new.ack(message)
    assert in_flight(broker, redis_client, "sync") == set() and broker.held("sync") == set()


def test_a_consumer_that_lost_nothing_leaves_the_others_messages_alone(broker, redis_client):
    """Two consumers of one queue in a process: the second takes nothing the first fetched."""
    send(broker, 6)
    first = broker.consume("sync", prefetch=3, timeout=TIMEOUT_MS)
    running = next(first)
    fetched_by_first = in_flight(broker, redis_client, "sync")
    assert len(fetched_by_first) == 3

    second = broker.consume("sync", prefetch=10, timeout=TIMEOUT_MS)
    got = drain(second, 3)

    assert len(got) == 3 and not set(redis_ids(got)) & fetched_by_first
    for message in [running, *drain(first, 2)]:
        first.ack(message)
    for message in got:
        second.ack(message)
    assert in_flight(broker, redis_client, "sync") == set() and broker.held("sync") == set()


def test_a_lost_delay_queue_consumer_gives_back_its_delayed_messages(broker, redis_client):
    """Dramatiq's consumer thread drops the delayed messages it holds with the consumer: those come back too."""
    sent = send(broker, 2, delay=60_000)
    lost = broker.consume("sync.DQ", prefetch=3, timeout=TIMEOUT_MS)
    assert len(drain(lost, 2)) == 2  # the thread keeps them until their eta, in a queue dropped with the consumer
    lose(lost, "fetch")

    new = broker.consume("sync.DQ", prefetch=10, timeout=TIMEOUT_MS)
    got = drain(new, 2)

    assert sorted(redis_ids(got)) == sorted(sent)
    for message in got:
        new.ack(message)
    assert in_flight(broker, redis_client, "sync.DQ") == set() and broker.held("sync.DQ") == set()
